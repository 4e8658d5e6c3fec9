"""Does the embedded model take valid ReAct steps? Parse-error and tool-call rates with and
without guided decoding, side by side, on DEV questions.

Questions: arithmetic DEV (seeded, `rankact.alignment.tasks.datasets.arith_tasks`), HotpotQA DEV and NQ
DEV from ../shared/data (first rows of each DEV range). Arithmetic gets the calculator;
HotpotQA/NQ get the calculator plus a BM25 `search` over that question's own context
passages (10 for HotpotQA, the gold passage for NQ), so every question has a useful tool.

    .venv/bin/python bench/agent_format.py                 # 20 arith + 15 hotpot + 15 nq
    .venv/bin/python bench/agent_format.py --limit 4       # 4 of each, for a quick look
    .venv/bin/python bench/agent_format.py --threads 1     # torch threads (helps on a busy CPU)

Unguided steps are capped at --unguided-tokens new tokens (default 96) so a run that
ignores the format cannot spend minutes per question; guided slots have their own caps.
Measured 2026-11-26 on the 2-core CPU (busy), embedded SmolLM2-135M-Instruct, max_steps=3,
`--threads 1 --out FILE`, all 50 questions (20 arith, 15 hotpot, 15 nq):

    metric                            guided   unguided
    parse errors / step                   0%        99%   (0/170 vs 149/150 steps)
    questions with a valid tool call    100%         0%
    answered                            100%         2%
    status finished                      30%         2%   (guided: 24 loop, 11 max_steps)
    exact match                           6%         0%

With `--string-input plain` (first 6 of each source, guided): 0% parse errors, valid tool
calls on 15/18 questions instead of 18/18 (calculator inputs like "368 + 226 = 594").

Per-question results are appended to --out (JSONL) as they finish; a rerun with the same
--out skips questions already there, and --summarize prints the table of such a file.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def load_questions(data: Path, n_arith: int, n_hotpot: int, n_nq: int) -> list[dict]:
    from rankact.alignment.tasks.datasets import arith_tasks

    out = [{"source": "arith", "question": t.question, "answers": t.answers, "passages": []}
           for t in arith_tasks("dev")[:n_arith]]
    hotpot = json.loads((data / "hotpot_dev_distractor_500.json").read_text(encoding="utf-8"))
    for row in hotpot[:n_hotpot]:  # DEV is rows 0-299
        passages = [{"title": title, "text": "".join(sentences)} for title, sentences in row["context"]]
        out.append({"source": "hotpot", "question": row["question"], "answers": [row["answer"]],
                    "passages": passages})
    with gzip.open(data / "nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):  # DEV is rows 0-1999
            if i >= n_nq:
                break
            row = json.loads(line)
            passages = [{"title": c["title"], "text": c["text"]} for c in row["ctxs"]]
            out.append({"source": "nq", "question": row["question"], "answers": row["answers"],
                        "passages": passages})
    return out


def retriever_for(item: dict):
    """A BM25 index over the question's own passages (None for arithmetic)."""
    if not item["passages"]:
        return None
    from rankact.retrieval import HashingEmbedder, Retriever

    retriever = Retriever(HashingEmbedder())
    retriever.add([{"id": f"p{i}", "title": p["title"], "text": p["text"], "source": p["title"]}
                   for i, p in enumerate(item["passages"])])
    return retriever


def run(args: argparse.Namespace) -> None:
    from rich.progress import track

    from rankact.agent.build import build_agent
    from rankact.agent.guided import GuidedConfig
    from rankact.agent.llm import GenerationConfig
    from rankact.agent.llm.local import TransformersLLM
    from rankact.agent.loop import DEFAULT_GENERATION
    from rankact.alignment.evaluation.metrics import answer_contains, exact_match

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    n = args.limit
    items = load_questions(Path(args.data), n or 20, n or 15, n or 15)
    llm = TransformersLLM(args.model)
    modes = [m for m in args.modes.split(",") if m]
    out = open(args.out, "a", encoding="utf-8") if args.out else None  # noqa: SIM115 - closed below
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    guided_config = GuidedConfig(string_input=args.string_input, answer_bias=args.answer_bias)
    unguided = GenerationConfig.model_validate({**DEFAULT_GENERATION.model_dump(),
                                                "max_new_tokens": args.unguided_tokens})
    done: dict[tuple[str, str], dict] = {}  # resume: rows already in --out are reused
    if args.out and Path(args.out).is_file():
        with open(args.out, encoding="utf-8") as fh:
            done = {(r["mode"], r["question"]): r for r in map(json.loads, fh)}
    for item in track(items, description=f"{len(items)} questions x {modes}"):
        for mode in modes:
            if (mode, item["question"]) in done:
                rows[mode].append(done[(mode, item["question"])])
                continue
            agent = build_agent(llm, retriever=retriever_for(item), search_k=2, search_mode="bm25",
                                max_steps=args.max_steps, guided=mode == "guided", guided_config=guided_config,
                                generation=unguided)
            started = time.perf_counter()
            traj = agent.run(item["question"])
            steps = len(traj.steps)
            row = {
                "mode": mode, "source": item["source"], "question": item["question"],
                "status": traj.status, "steps": steps, "parse_errors": traj.parse_errors,
                "tool_calls": traj.tool_calls,
                "valid_tool_calls": sum(1 for s in traj.steps if s.action and s.error is None),
                "answered": traj.final_answer is not None,
                "em": exact_match(traj.final_answer, item["answers"]) > 0,
                "contains": answer_contains(traj.final_answer, item["answers"]) > 0,
                "seconds": round(time.perf_counter() - started, 2),
                "final_answer": traj.final_answer,
            }
            rows[mode].append(row)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
    if out:
        out.close()

    report(rows, modes, f"agent format: {len(items)} DEV questions, max_steps={args.max_steps}")


def report(rows: dict[str, list[dict]], modes: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for mode in modes:
        table.add_column(mode, justify="right")

    def col(fn) -> list[str]:
        return [fn(rows[m]) for m in modes]

    def pct(num: float, den: float) -> str:
        return f"{100 * num / den:.0f}%" if den else "-"

    table.add_row("parse errors / step", *col(lambda r: pct(sum(x["parse_errors"] for x in r),
                                                             sum(x["steps"] for x in r))))
    table.add_row("questions with a parse error", *col(lambda r: pct(sum(x["parse_errors"] > 0 for x in r), len(r))))
    table.add_row("questions with a tool call", *col(lambda r: pct(sum(x["tool_calls"] > 0 for x in r), len(r))))
    table.add_row("questions with a valid tool call",
                  *col(lambda r: pct(sum(x["valid_tool_calls"] > 0 for x in r), len(r))))
    table.add_row("answered", *col(lambda r: pct(sum(x["answered"] for x in r), len(r))))
    table.add_row("status finished", *col(lambda r: pct(sum(x["status"] == "finished" for x in r), len(r))))
    table.add_row("exact match", *col(lambda r: pct(sum(x["em"] for x in r), len(r))))
    table.add_row("answer contains gold", *col(lambda r: pct(sum(x["contains"] for x in r), len(r))))
    table.add_row("seconds / question", *col(lambda r: f"{sum(x['seconds'] for x in r) / max(len(r), 1):.1f}"))
    Console().print(table)
    for source in ("arith", "hotpot", "nq"):
        parts = []
        for mode in modes:
            r = [x for x in rows[mode] if x["source"] == source]
            if r:
                parts.append(f"{mode}: parse-err/step {pct(sum(x['parse_errors'] for x in r), sum(x['steps'] for x in r))}"
                             f", tool-call {pct(sum(x['tool_calls'] > 0 for x in r), len(r))}"
                             f", EM {pct(sum(x['em'] for x in r), len(r))}")
        if parts:
            print(f"{source:7s} " + " | ".join(parts))


def summarize(path: str) -> None:
    """The table for a (possibly partial) --out file: only questions every mode finished."""
    rows: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            rows.setdefault(row["mode"], []).append(row)
    modes = list(rows)
    done = set.intersection(*({r["question"] for r in rows[m]} for m in modes))
    rows = {m: [r for r in rows[m] if r["question"] in done] for m in modes}
    report(rows, modes, f"agent format: {len(done)} DEV questions (from {path})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="questions per source (default 20/15/15)")
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--modes", default="guided,unguided")
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--unguided-tokens", type=int, default=96)
    parser.add_argument("--string-input", choices=["plain", "json"], default="json")
    parser.add_argument("--answer-bias", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="", help="append per-question rows to this JSONL file")
    parser.add_argument("--summarize", default="", help="only print the table of an existing --out file")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
    else:
        run(args)


if __name__ == "__main__":
    main()
