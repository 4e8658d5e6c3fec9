"""Task files and retrieval corpora built from the public evaluation data in `../shared/data`.

Splits are by position in each file (see that folder's README): DEV is for developing and
tuning, TEST is held out and only ever used to report a number.

| preset | DEV | TEST | corpus |
|---|---|---|---|
| `hotpot` | rows 0-299 | rows 300-499 | every context paragraph of the split's rows (title + sentences) |
| `nq` | rows 0-1999 | rows 2000-2654 | the split's gold passages (`ctxs` with `isgold`) |
| `arith` | seed 1001 | seed 2002 | none (the calculator is the tool) |
| `arith-phrased` | seed 3003, training phrasings | seed 4004, training phrasings | none: in distribution (`tasks/arithmetic.py`) |
| `arith-heldout` | seed 3004, DEV's held-out phrasings | seed 4005, TEST's held-out phrasings | none: out of distribution, never trained on |
| `advbench` | rows 0-259 | rows 260-519 | none (refusal requests, no gold answers) |
| `benign` | rows 0-59 | rows 60-119 | none (benign requests, for over-refusal; bundled, see below) |

`benign` is bundled with rankact (`alignment/tasks/data/benign_requests.jsonl`), written for it:
120 harmless requests, half everyday instructions in AdvBench's imperative form ("Write a
letter ...", "Create a plan ..."), half safe requests in words that sound harmful ("How do I kill
a Python process ...?"), the kind XSTest (Röttger et al., 2024) uses to catch over-refusal. A
model taught to refuse harmful requests should still answer these; its refusal rate on them is
the cost of its refusals.

Each task names the tool its dataset is about in `metadata["tools"]` (`search` for the QA
sets, `calculator` for arithmetic); `rankact eval`, the demo and the bench give the agent
only those tools (remove the key to offer every tool).

Run `python -m rankact.alignment.tasks.datasets hotpot:dev --out tasks.jsonl --corpus corpus.jsonl` to
write a task file and its corpus (JSONL records `{id, title, text, source, metadata}`, which
`rankact index build` reads).
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from rankact.agent.errors import RankactError
from rankact.alignment.errors import DatasetError
from rankact.alignment.tasks import Task, write_tasks

Split = Literal["dev", "test"]

HOTPOT_FILE = "hotpot_dev_distractor_500.json"
NQ_FILE = "nq-open-oracle.jsonl.gz"
ADVBENCH_FILE = "advbench_harmful_behaviors.csv"

# Row ranges [start, stop) by position in each file.
SPLITS: dict[str, dict[str, tuple[int, int]]] = {
    "hotpot": {"dev": (0, 300), "test": (300, 500)},
    "nq": {"dev": (0, 2000), "test": (2000, 2655)},
    "advbench": {"dev": (0, 260), "test": (260, 520)},
    "benign": {"dev": (0, 60), "test": (60, 120)},
}
# Arithmetic is generated: distinct seeds keep DEV and TEST apart (and reproducible).
ARITH_SEEDS = {"dev": 1001, "test": 2002}
ARITH_DEFAULT_COUNT = 200
PRESETS = ("hotpot", "nq", "arith", "arith-phrased", "arith-heldout", "advbench", "benign")
PASSAGE_PRESETS = ("hotpot", "nq")  # the presets that come with passages to search (preset_corpus)



class Passage(BaseModel):
    """One corpus record, in the JSONL shape the retrieval loaders read."""

    id: str
    title: str
    text: str
    source: str
    metadata: dict[str, Any] = Field(default_factory=dict)


def data_dir(path: str | Path | None = None) -> Path:
    """The evaluation data folder: the argument, else $RANKACT_DATA, else ../shared/data
    beside the repository."""
    if path is None:
        env = os.environ.get("RANKACT_DATA")
        # alignment/tasks/datasets.py -> the checkout is parents[2]; the data lies beside it
        path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(
            f"evaluation data folder not found: {path} (set RANKACT_DATA or pass --data DIR)"
        )
    return path


def _file(folder: str | Path | None, name: str) -> Path:
    path = data_dir(folder) / name
    if not path.is_file():
        raise DatasetError(f"data file not found: {path}")
    return path


def _check_split(split: str) -> Split:
    if split not in ("dev", "test"):
        raise DatasetError(f"unknown split {split!r}: use dev or test")
    return split  # type: ignore[return-value]


def _rows(preset: str, split: str, rows: list[Any]) -> Iterator[tuple[int, Any]]:
    start, stop = SPLITS[preset][_check_split(split)]
    stop = min(stop, len(rows))
    for index in range(start, stop):
        yield index, rows[index]


# --- HotpotQA -----------------------------------------------------------------------------

def _hotpot_rows(folder: str | Path | None) -> list[dict]:
    path = _file(folder, HOTPOT_FILE)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def hotpot_tasks(split: str = "dev", folder: str | Path | None = None) -> list[Task]:
    tasks = []
    for index, row in _rows("hotpot", split, _hotpot_rows(folder)):
        gold_titles = list(dict.fromkeys(title for title, _ in row["supporting_facts"]))
        tasks.append(Task(
            id=f"hotpot-{index}",
            question=row["question"],
            answers=[row["answer"]],
            metadata={"dataset": "hotpot", "split": split, "row": index, "gold_titles": gold_titles,
                      "type": row.get("type"), "level": row.get("level"), "tools": ["search"]},
        ))
    return tasks


def hotpot_corpus(split: str = "dev", folder: str | Path | None = None) -> list[Passage]:
    """The union of the split's context paragraphs, one passage per distinct title
    (titles repeat across questions; the first occurrence wins)."""
    seen: dict[str, Passage] = {}
    for _, row in _rows("hotpot", split, _hotpot_rows(folder)):
        for title, sentences in row["context"]:
            if title not in seen:
                seen[title] = Passage(
                    id=f"hotpot:{title}", title=title, text="".join(sentences).strip(),
                    source=f"hotpotqa:{title}",
                )
    return list(seen.values())


# --- Natural Questions (open) -------------------------------------------------------------

def _nq_rows(folder: str | Path | None) -> list[dict]:
    path = _file(folder, NQ_FILE)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a gzipped JSONL file ({exc})") from exc


def _nq_gold(row: dict) -> list[dict]:
    ctxs = row.get("ctxs") or []
    return [c for c in ctxs if c.get("isgold")] or ctxs[:1]


def nq_tasks(split: str = "dev", folder: str | Path | None = None) -> list[Task]:
    return [
        Task(
            id=f"nq-{index}",
            question=row["question"],
            answers=list(row["answers"]),
            metadata={"dataset": "nq", "split": split, "row": index,
                      "gold_titles": [c["title"] for c in _nq_gold(row)], "tools": ["search"]},
        )
        for index, row in _rows("nq", split, _nq_rows(folder))
    ]


def nq_corpus(split: str = "dev", folder: str | Path | None = None) -> list[Passage]:
    passages = []
    for index, row in _rows("nq", split, _nq_rows(folder)):
        for n, ctx in enumerate(_nq_gold(row)):
            passages.append(Passage(
                id=f"nq:{index}:{n}", title=ctx["title"], text=ctx["text"],
                source=f"nq-open:{ctx['title']}", metadata={"row": index},
            ))
    return passages


# --- Arithmetic ---------------------------------------------------------------------------

def _arith_question(rng: random.Random) -> tuple[str, int]:
    kind = rng.choice(["add", "sub", "mul", "mul", "two_step"])
    a, b = rng.randint(11, 99), rng.randint(11, 99)
    if kind == "add":
        a, b = a * 10 + rng.randint(0, 9), b * 10 + rng.randint(0, 9)
        return f"What is {a} + {b}?", a + b
    if kind == "sub":
        a, b = max(a, b) * 10, min(a, b) * 7
        return f"What is {a} - {b}?", a - b
    if kind == "mul":
        return f"What is {a} * {b}?", a * b
    c = rng.randint(2, 9)
    return f"What is ({a} + {b}) * {c}?", (a + b) * c


def arith_tasks(split: str = "dev", count: int = ARITH_DEFAULT_COUNT) -> list[Task]:
    """`count` integer arithmetic questions from a fixed seed per split; DEV and TEST
    use different seeds and TEST drops any question that also appears in DEV."""
    _check_split(split)
    rng = random.Random(ARITH_SEEDS[split])
    avoid = {t.question for t in arith_tasks("dev", count)} if split == "test" else set()
    tasks: list[Task] = []
    seen: set[str] = set()
    while len(tasks) < count:
        question, answer = _arith_question(rng)
        if question in seen or question in avoid:
            continue
        seen.add(question)
        tasks.append(Task(id=f"arith-{split}-{len(tasks)}", question=question, answers=[str(answer)],
                          metadata={"dataset": "arith", "split": split, "seed": ARITH_SEEDS[split],
                                    "tools": ["calculator"]}))
    return tasks


def phrased_arith_tasks(preset: str, split: str = "dev", count: int = ARITH_DEFAULT_COUNT) -> list[Task]:
    """Arithmetic asked in many phrasings (`tasks/arithmetic.py`): `arith-phrased` in the
    training phrasings, `arith-heldout` in phrasings held out of training (DEV's for choosing,
    TEST's for reporting). TEST drops any question that also appears in DEV."""
    from rankact.alignment.tasks.arithmetic import PRESET_GROUPS, phrased_questions

    _check_split(split)
    avoid = {t.question for t in phrased_arith_tasks(preset, "dev", count)} if split == "test" else set()
    rows = [row for row in phrased_questions(preset, split, count + len(avoid)) if row[0] not in avoid][:count]
    distribution = "in" if preset == "arith-phrased" else "out"
    return [
        Task(id=f"{preset}-{split}-{n}", question=question, answers=[str(answer)],
             metadata={"dataset": preset, "split": split, "template": template.id, "op": template.op,
                       "operands": values,
                       "template_group": PRESET_GROUPS[preset][split], "distribution": distribution,
                       "tools": ["calculator"]})
        for n, (question, answer, template, values) in enumerate(rows)
    ]


# --- AdvBench -----------------------------------------------------------------------------

def advbench_tasks(split: str = "dev", folder: str | Path | None = None) -> list[Task]:
    """Harmful requests for measuring refusals; no gold answers (a refusal is the goal)."""
    path = _file(folder, ADVBENCH_FILE)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "goal" not in rows[0]:
        raise DatasetError(f"{path}: expected a 'goal' column")
    return [
        Task(id=f"advbench-{index}", question=row["goal"],
             metadata={"dataset": "advbench", "split": split, "row": index, "target": row.get("target", "")})
        for index, row in _rows("advbench", split, rows)
    ]


# --- Benign requests (bundled) ------------------------------------------------------------

def benign_tasks(split: str = "dev") -> list[Task]:
    """Harmless requests for measuring over-refusal (module docstring); no gold answers."""
    from rankact.alignment.tasks.bundled import benign_requests

    return [
        Task(id=f"benign-{index}", question=row["request"],
             metadata={"dataset": "benign", "split": split, "row": index, "kind": row["kind"]})
        for index, row in _rows("benign", split, benign_requests())
    ]


# --- Presets ------------------------------------------------------------------------------

def parse_preset(spec: str) -> tuple[str, Split] | None:
    """`hotpot:dev` -> ("hotpot", "dev"); a bare name means dev; None if not a preset."""
    name, _, split = spec.partition(":")
    if name not in PRESETS:
        return None
    return name, _check_split(split or "dev")


def preset_specs(spec: str) -> list[str]:
    """The comma-separated presets of an option, e.g. "nq:dev, hotpot:dev" -> ["nq:dev", "hotpot:dev"]."""
    return [part.strip() for part in spec.split(",") if part.strip()]


def trained_presets(spec: str, allowed: tuple[str, ...], option: str, what: str) -> list[str]:
    """The presets of a training option (`--lookup`, `--refusals`), each one of `allowed` (else
    "name `what`") and each its DEV split: what is trained on must never be a TEST split."""
    specs = preset_specs(spec)
    for part in specs:
        preset = parse_preset(part)
        if preset is None or preset[0] not in allowed:
            raise DatasetError(f"{option} {part!r}: name {what}")
        if preset[1] != "dev":
            raise DatasetError(f"{option} {part!r}: {option} sets are trained on; use the DEV split")
    return specs


def preset_tasks(name: str, split: str, folder: str | Path | None = None) -> list[Task]:
    if name == "hotpot":
        return hotpot_tasks(split, folder)
    if name == "nq":
        return nq_tasks(split, folder)
    if name == "arith":
        return arith_tasks(split)
    if name in ("arith-phrased", "arith-heldout"):
        return phrased_arith_tasks(name, split)
    if name == "advbench":
        return advbench_tasks(split, folder)
    if name == "benign":
        return benign_tasks(split)
    raise DatasetError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")


def preset_corpus(name: str, split: str, folder: str | Path | None = None) -> list[Passage]:
    """The passages an agent searches for a preset; empty when the preset needs none."""
    if name == "hotpot":
        return hotpot_corpus(split, folder)
    if name == "nq":
        return nq_corpus(split, folder)
    return []


def write_corpus(passages: list[Passage], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(passage.model_dump_json() + "\n" for passage in passages)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rankact.alignment.tasks.datasets",
                                     description="Write a task file (and its corpus) for a preset.")
    parser.add_argument("preset", help=f"one of {', '.join(PRESETS)}, with :dev or :test (default dev)")
    parser.add_argument("--out", required=True, help="task file to write (JSONL)")
    parser.add_argument("--corpus", help="also write the preset's passages here (JSONL)")
    parser.add_argument("--limit", type=int, help="keep only the first N tasks")
    parser.add_argument("--data", help="evaluation data folder (default ../shared/data or $RANKACT_DATA)")
    args = parser.parse_args(argv)
    try:
        parsed = parse_preset(args.preset)
        if parsed is None:
            raise DatasetError(f"unknown preset {args.preset!r}: use one of {', '.join(PRESETS)}")
        name, split = parsed
        tasks = preset_tasks(name, split, args.data)[: args.limit]
        write_tasks(tasks, args.out)
        print(f"wrote {len(tasks)} {name}:{split} tasks to {args.out}")
        if args.corpus:
            passages = preset_corpus(name, split, args.data)
            write_corpus(passages, args.corpus)
            print(f"wrote {len(passages)} passages to {args.corpus}")
    except RankactError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
