"""What `rankact eval`, the demo and the alignment bench share: loading a model spec, building
(and caching) a retrieval index for a preset's passages, and assembling the agent.

Preset indexes are cached under `<rankact cache>/indexes/<preset>-<split>-<hash>`, the hash
covering the passages, so a changed data file rebuilds rather than reusing a stale index.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.errors import RankactError
from agent.llm.model_files import cache_root

DEFAULT_MAX_STEPS = 5


class EvalSetupError(RankactError):
    pass


def load_model(spec: str) -> Any:
    """`default` | a model folder | an http(s) URL | `scripted:PATH`, via agent.llm.load_llm."""
    from agent.llm.loading import load_llm

    return load_llm(spec)


def model_label(spec: str) -> str:
    """A short column title for a model spec (a folder's last two parts)."""
    if spec.startswith(("http://", "https://", "scripted:")) or spec == "default":
        return spec
    parts = Path(spec).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else spec


def build_index(records: Sequence[dict], out: Path, *, progress: bool = True, embedder: Any = None) -> Path:
    """Index JSONL-shaped records ({id, title, text, source, metadata}) into `out` (the
    retriever saves atomically: an interrupted build never leaves a folder that looks complete)."""
    from retrieval import Retriever

    retriever = Retriever(embedder, show_progress=progress)
    retriever.add(list(records))
    retriever.save(out)
    return Path(out)


def load_retriever(index_dir: str | Path) -> Any:
    from retrieval import Retriever

    path = Path(index_dir)
    if not path.is_dir():
        raise EvalSetupError(f"index folder not found: {path} (build one with `rankact index build`)")
    return Retriever.load(path)


def preset_index(name: str, split: str, data: str | Path | None = None, *, progress: bool = True,
                 on_build: Callable[[int], None] | None = None) -> Path | None:
    """The cached index over a preset split's passages, built on first use; None for presets
    without a corpus (arithmetic)."""
    from alignment.tasks.datasets import preset_corpus

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


def make_tools(retriever: Any = None, k: int = 3, names: Sequence[str] | None = None) -> list[Any]:
    """The calculator always; the search tool over `retriever` when there is one. `names`
    keeps only those tools (a task's `metadata["tools"]`), in that order."""
    from tools import calculator

    tools: list[Any] = [calculator]
    if retriever is not None:
        from tools.search import SearchTool

        tools.append(SearchTool(retriever, k=k))
    if names is None:
        return tools
    by_name = {t.name: t for t in tools}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise EvalSetupError(f"task asks for tools {missing} that are not available here "
                             f"(available: {', '.join(by_name)}; search needs an index)")
    return [by_name[n] for n in names]


def make_agent(llm: Any, retriever: Any = None, *, max_steps: int = DEFAULT_MAX_STEPS,
               tools: Sequence[str] | None = None, **kwargs: Any) -> Any:
    from agent.loop import Agent

    return Agent(llm, make_tools(retriever, names=tools), max_steps=max_steps, **kwargs)


def tool_groups(tasks: Sequence[Any]) -> list[tuple[tuple[str, ...] | None, list[Any]]]:
    """Tasks grouped by the tool set they ask for (`metadata["tools"]`, None = all tools),
    groups in order of first appearance."""
    groups: dict[tuple[str, ...] | None, list[Any]] = {}
    for task in tasks:
        names = task.metadata.get("tools")
        groups.setdefault(tuple(names) if names else None, []).append(task)
    return list(groups.items())


def evaluate_agent(llm: Any, tasks: Sequence[Any], *, retriever: Any = None, label: str = "",
                   max_steps: int = DEFAULT_MAX_STEPS, progress: bool = True,
                   on_result: Callable[[Any, Any], None] | None = None) -> Any:
    """`alignment.evaluate.evaluate` with one agent per tool group (see `tool_groups`), the
    results merged into one report in the tasks' order."""
    import time

    from alignment.evaluation.evaluate import evaluate, summarize

    start = time.perf_counter()
    results = {}
    for names, group in tool_groups(tasks):
        agent = make_agent(llm, retriever, max_steps=max_steps, tools=names)
        report = evaluate(agent, group, label=label, progress=progress, on_result=on_result)
        results.update({id(task): result for task, result in zip(group, report.results, strict=True)})
    return summarize([results[id(task)] for task in tasks], label, wall_s=time.perf_counter() - start)
