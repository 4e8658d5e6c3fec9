"""Retrieval indexes for task corpora: building one from JSONL-shaped records, and the cached
index over a preset split's passages.

Preset indexes are cached under `<rankact cache>/indexes/<preset>-<split>-<hash>`, the hash
covering the passages, so a changed data file rebuilds rather than reusing a stale index.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rankact.agent.llm.model_files import cache_root


def build_index(records: Sequence[dict], out: Path, *, progress: bool = True, embedder: Any = None) -> Path:
    """Index JSONL-shaped records ({id, title, text, source, metadata}) into `out` (the
    retriever saves atomically: an interrupted build never leaves a folder that looks complete)."""
    from rankact.retrieval import Retriever

    retriever = Retriever(embedder, show_progress=progress)
    retriever.add(list(records))
    retriever.save(out)
    return Path(out)


def preset_index(name: str, split: str, data: str | Path | None = None, *, progress: bool = True,
                 on_build: Callable[[int], None] | None = None) -> Path | None:
    """The cached index over a preset split's passages, built on first use; None for presets
    without a corpus (arithmetic)."""
    from rankact.alignment.tasks.datasets import preset_corpus

    passages = preset_corpus(name, split, data)
    if not passages:
        return None
    digest = hashlib.sha256()
    for p in passages:
        digest.update(p.id.encode())
        digest.update(p.text.encode())
    folder = cache_root() / "indexes" / f"{name}-{split}-{digest.hexdigest()[:12]}"
    if not folder.is_dir():
        if on_build:
            on_build(len(passages))
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_index([p.model_dump() for p in passages], folder, progress=progress)
    return folder


def tasks_and_index(spec: str, data: str | Path | None = None, *, limit: int | None = None, progress: bool = True,
                    on_build: Callable[[str, int], None] | None = None,
                    with_index: bool = True) -> tuple[list, Path | None]:
    """A task file or a preset (`arith:dev`, `hotpot:test`, ...): the first `limit` tasks and, for a
    preset with passages (and `with_index`), the cached index over them (None for a task file or
    arithmetic)."""
    from rankact.alignment.errors import DatasetError
    from rankact.alignment.tasks import load_tasks
    from rankact.alignment.tasks.datasets import parse_preset, preset_tasks

    preset = parse_preset(spec)
    if preset is None or Path(spec).is_file():
        return load_tasks(spec)[:limit], None
    name, split = preset
    if name == "advbench":
        raise DatasetError("advbench has no gold answers: use `rankact eval --refusal`")
    index = preset_index(name, split, data, progress=progress,
                         on_build=(lambda n: on_build(f"{name}:{split}", n)) if on_build else None) if with_index else None
    return preset_tasks(name, split, data)[:limit], index
