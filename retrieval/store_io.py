"""The on-disk layout of an index folder and how it is written without ever leaving a
half-written index behind.

    DIR/manifest.json   format version, embedder, chunking, index kind, checksums of the
                        two files below, corpus fingerprint, library versions (retrieval.manifest)
    DIR/dense.faiss     faiss.write_index of the IndexIDMap2
    DIR/store.sqlite    documents, chunks, the id counter and the embedding cache

A save writes a complete new folder beside DIR, then swaps it in with two renames; if the
process dies between them, the next load finds the previous folder (renamed aside) and
puts it back. No pickle anywhere."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from rankact.retrieval.errors import IndexFormatError
from rankact.retrieval.manifest import MANIFEST


def _aside(folder: Path, tag: str) -> list[Path]:
    return sorted(folder.parent.glob(f".{folder.name}.{tag}-*"), key=lambda p: p.stat().st_mtime, reverse=True)


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.iterdir(), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` to fill a fresh sibling folder, then swap it in for `folder`.
    Until the swap, `folder` keeps the previous complete index."""
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise IndexFormatError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise IndexFormatError(f"{folder} is a non-empty folder that is not an index; refusing to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in _aside(folder, "saving"):  # left by a save that crashed before its swap
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.parent / f".{folder.name}.saving-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(folder, old)
    os.rename(tmp, folder)  # a crash before this line is repaired by `recover`
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover(folder: Path) -> None:
    """If a save died between its two renames, put the previous index back in place."""
    folder = Path(folder).absolute()
    if folder.exists():
        return
    for old in _aside(folder, "old"):
        if (old / MANIFEST).is_file():
            os.rename(old, folder)
            return
