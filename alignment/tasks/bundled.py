"""The data bundled with rankact: a small original corpus about a fictional island and its
questions (`alignment/tasks/data/`), used by the demo and the tests."""
from __future__ import annotations

import json
from importlib import resources

from alignment.tasks.task import Task


def demo_corpus() -> list[dict]:
    """The bundled corpus: a dozen short original passages about a fictional island."""
    text = resources.files("alignment.tasks.data").joinpath("demo_corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def demo_tasks() -> tuple[list[Task], list[Task]]:
    """(train, held-out) demo questions: train ones are collected and ranked, held-out ones
    only measured before and after."""
    text = resources.files("alignment.tasks.data").joinpath("demo_tasks.jsonl").read_text(encoding="utf-8")
    tasks = [Task.model_validate_json(line) for line in text.splitlines() if line.strip()]
    train = [t for t in tasks if t.metadata.get("split") == "train"]
    heldout = [t for t in tasks if t.metadata.get("split") == "heldout"]
    return train, heldout
