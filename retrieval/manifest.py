"""An index folder's `manifest.json`: its schema, how it is read (bounded, validated, every
failure one `IndexFormatError` line), and the file checksums that tie the folder together.

The manifest records the SHA-256 and size of `dense.faiss` and `store.sqlite` and the
corpus fingerprint (`DocStore.fingerprint`), so a file changed or copied in from another
index (same dimension, same chunk ids) is refused instead of answering wrongly.

Indexes written before checksums existed (no `files` entry) still load, with one warning:
they are caches of a corpus (the preset indexes under ~/.cache/rankact among them), and
refusing them would break every command that uses one until it is deleted by hand; the
store/index consistency checks on load still apply to them, and `rankact index build`
adds checksums (reusing the stored embeddings, so it is cheap).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rankact.retrieval.errors import IndexFormatError

FORMAT = "rankact-retrieval"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FILE = "dense.faiss"
STORE_FILE = "store.sqlite"
MAX_MANIFEST_BYTES = 1_000_000  # a real manifest is under 1 kB
_HASH_CHUNK = 1 << 20

log = logging.getLogger("rankact.retrieval")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # strict: "16" is not a dimension


class EmbedderInfo(_Strict):
    name: str = Field(min_length=1, max_length=500)
    dimension: int = Field(ge=1, le=65_536)
    path: str = Field(default="", max_length=4096)


class ChunkingInfo(_Strict):
    max_tokens: int = Field(ge=1, le=1_000_000)
    overlap: int = Field(ge=0, le=1_000_000)


class IndexInfo(_Strict):
    requested: Literal["flat", "hnsw", "ivf", "auto"]
    kind: Literal["flat", "hnsw", "ivf"]


class FileInfo(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class CorpusInfo(_Strict):
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    documents: int = Field(ge=0)
    chunks: int = Field(ge=0)


class Manifest(_Strict):
    format: Literal["rankact-retrieval"]
    format_version: int
    embedder: EmbedderInfo
    chunking: ChunkingInfo
    index: IndexInfo
    files: dict[Literal["dense.faiss", "store.sqlite"], FileInfo] | None = None  # None: built before checksums
    corpus: CorpusInfo | None = None
    versions: dict[str, str] = Field(default_factory=dict)


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("faiss-cpu", "bm25s", "sentence-transformers", "transformers", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def file_info(path: Path) -> FileInfo:
    """SHA-256 and size of a file, streamed in 1 MiB reads (a large FAISS file is never held
    in memory for this)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileInfo(sha256=digest.hexdigest(), bytes=size)


def write_manifest(folder: Path, fields: dict[str, Any], corpus: dict[str, Any]) -> None:
    """Write the manifest of the files already in `folder`, with their checksums."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields,
            "files": {name: file_info(folder / name).model_dump() for name in (INDEX_FILE, STORE_FILE)},
            "corpus": corpus, "versions": library_versions()}
    Manifest.model_validate(data)  # never write one that would not load
    (folder / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the top level"
    return f"{where}: {err['msg']}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


def read_manifest(folder: Path) -> Manifest:
    """The folder's validated manifest, after checking that its files are there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IndexFormatError(f"no index at {folder}: folder not found")
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexFormatError(f"{folder} is not a retrieval index (no {MANIFEST})")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise IndexFormatError(f"{path} is unreadable: larger than {MAX_MANIFEST_BYTES} bytes")
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, OSError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
        detail = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:200]
        raise IndexFormatError(f"{path} is unreadable: {detail}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IndexFormatError(f"{folder} is not a retrieval index ({MANIFEST} has another format)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(f"{folder} has index format version {str(version)[:20]}; this rankact reads "
                               f"version {FORMAT_VERSION}. Rebuild the index")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise IndexFormatError(f"{folder} is damaged: {MANIFEST} is invalid at {_first_problem(exc)}") from None
    for name in (INDEX_FILE, STORE_FILE):
        if not (folder / name).is_file():
            raise IndexFormatError(f"{folder} is damaged: {name} is missing")
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Refuse files whose checksum is not the one the manifest recorded (an index that
    recorded none passes here; `warn_unverified` says so once it has loaded)."""
    if manifest.files is None:
        return
    for name in (INDEX_FILE, STORE_FILE):
        expected = manifest.files.get(name)
        if expected is None:
            raise IndexFormatError(f"{folder} is damaged: {MANIFEST} records no checksum for {name}")
        try:
            actual = file_info(folder / name)
        except OSError as exc:
            raise IndexFormatError(f"{folder} is damaged: cannot read {name}: {exc.strerror}") from None
        if actual != expected:
            raise IndexFormatError(f"{folder} is damaged: {name} does not match the checksum in {MANIFEST} "
                                   f"(changed, or copied from another index, since it was saved); rebuild the index")


def warn_unverified(folder: Path, manifest: Manifest) -> None:
    """One warning line for an index saved before checksums existed (after it loaded, so a
    damaged one shows only its error)."""
    if manifest.files is None:
        log.warning("index %s has no checksums (built by an older rankact); rebuild it with "
                    "`rankact index build` to have its files verified", folder)
