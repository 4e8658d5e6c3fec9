"""The data bundled with rankact (`alignment/tasks/data/`): a small original corpus about a
fictional island and its questions, used by the demo and the tests, and the benign requests of
the over-refusal check (the `benign` preset)."""
from __future__ import annotations

import json
from importlib import resources

from rankact.alignment.tasks.task import Task


def _lines(name: str) -> list[str]:
    """The non-blank lines of a bundled JSONL file."""
    text = resources.files("rankact.alignment.tasks.data").joinpath(name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def demo_corpus() -> list[dict]:
    """The bundled corpus: a dozen short original passages about a fictional island."""
    return [json.loads(line) for line in _lines("demo_corpus.jsonl")]


def benign_requests() -> list[dict]:
    """The 120 benign requests, `{request, kind}` in file order (splits: `datasets.SPLITS`)."""
    return [json.loads(line) for line in _lines("benign_requests.jsonl")]


def demo_tasks() -> tuple[list[Task], list[Task]]:
    """(train, held-out) demo questions: train ones are collected and ranked, held-out ones
    only measured before and after."""
    tasks = [Task.model_validate_json(line) for line in _lines("demo_tasks.jsonl")]
    train = [t for t in tasks if t.metadata.get("split") == "train"]
    heldout = [t for t in tasks if t.metadata.get("split") == "heldout"]
    return train, heldout
