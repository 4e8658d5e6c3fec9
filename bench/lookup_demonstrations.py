"""Do lookup demonstrations teach the agent to answer from its passages? SFT on DEV
demonstrations written from gold answers, reported on TEST beside the base model.

    python bench/lookup_demonstrations.py                    # CPU defaults: 128 NQ + 64 HotpotQA DEV
                                                             # demonstrations, 48 steps, NQ TEST 100
    python bench/lookup_demonstrations.py --nq-test 300 --hotpot-test 200                  # the issue's sizes
    python bench/lookup_demonstrations.py --train 512 --hotpot-train 140 --steps 160 --nq-test 655 --hotpot-test 200

Why a separate bench: on lookup questions the embedded model never copies an answer out of the
passages it retrieved (bench/alignment.py: 0% NQ and HotpotQA success for base and for every
trainer), so rankings of its own samples have nothing to push up. A demonstration per DEV
question (alignment/feedback/demonstrations/lookup.py: search with the question, answer with
the gold answer the passages hold; none where they hold none) is recorded through the real
agent and search tool, then one LoRA SFT run trains on them. In `rankact align rounds` the same
demonstrations join each question's samples and the simulated annotator ranks them first, so
best-of-K SFT trains on them as here; this bench skips the samples, which lose to the
demonstrations anyway, to fit the CPU.

Training uses NQ and HotpotQA DEV only (each with its DEV passages as the index); TEST sets are only measured, each
with its own TEST passages as the index. Report: success, exact match and token F1 with 95%
intervals, the paired difference against base with its bootstrap interval and p-value
(exact McNemar; sign-flip permutation for F1), statuses, and wall times.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console
from rich.table import Table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="base", help="starting policy (base: the embedded SmolLM2-135M, untuned)")
    p.add_argument("--train", type=int, default=128, help="NQ DEV demonstrations (from DEV row 0 on)")
    p.add_argument("--hotpot-train", type=int, default=64,
                   help="HotpotQA DEV demonstrations (from DEV row 0 on; about half its questions have one)")
    p.add_argument("--steps", type=int, default=48, help="SFT optimizer steps")
    p.add_argument("--batch-size", type=int, default=4, help="demonstrations per optimizer step")
    p.add_argument("--lr", type=float, default=2e-4, help="LoRA learning rate")
    p.add_argument("--nq-test", type=int, default=100, help="NQ TEST questions (all: 655)")
    p.add_argument("--hotpot-test", type=int, default=0, help="HotpotQA TEST questions (all: 200)")
    p.add_argument("--max-steps", type=int, default=3, help="agent steps per question")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, numbers mean nothing")
    p.add_argument("--out", type=Path, help="run folder (default /tmp/rankact-bench-lookup-<time>)")
    p.add_argument("--data", type=Path, help="evaluation data folder (default ../shared/data)")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.hotpot_train, args.steps, args.batch_size, args.nq_test = 4, 2, 1, 2, 2
        args.hotpot_test = min(args.hotpot_test, 2)
    args.out = args.out or Path(f"/tmp/rankact-bench-lookup-{time.strftime('%Y%m%d-%H%M%S')}")
    return args


def write_and_record(args, llm, console) -> list:
    """Demonstrations of NQ and HotpotQA DEV questions, written to the run folder and recorded
    through the agent, each set over its own DEV passages."""
    from rankact.alignment.feedback.demonstrations.lookup import demonstrate_preset
    from rankact.alignment.feedback.demonstrations.recording import write_demonstrations

    trajectories = []
    for name, n in (("nq", args.train), ("hotpot", args.hotpot_train)):
        if not n:
            continue
        demos, recorded = demonstrate_preset(f"{name}:dev", llm, data=args.data, limit=n, max_steps=args.max_steps)
        path = args.out / f"demonstrations-{name}.jsonl"
        write_demonstrations(demos, path)
        console.print(f"{len(demos)} demonstrations of {name} DEV questions -> {path}")
        trajectories += recorded
    return trajectories


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.perf_counter()
    console = Console()
    from rankact.agent.build import load_index
    from rankact.agent.llm import load_llm
    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.alignment.evaluation.evaluate import evaluate_llm, paired_differences, paired_table
    from rankact.alignment.tasks.indexes import tasks_and_index
    from rankact.alignment.training.policy import LoraSettings
    from rankact.alignment.training.sft import SFTConfig, train_sft

    quiet_libraries()
    args.out.mkdir(parents=True, exist_ok=True)
    console.print(f"command: python bench/lookup_demonstrations.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    timings: dict[str, float] = {}

    started = time.perf_counter()
    trajectories = write_and_record(args, load_llm(args.model), console)
    timings["write + record demonstrations"] = time.perf_counter() - started
    started = time.perf_counter()
    policy = args.out / "policy"
    result = train_sft(SFTConfig(out_dir=policy, base=args.model, lora=LoraSettings(), learning_rate=args.lr,
                                 max_length=768, batch_size=args.batch_size, max_steps=args.steps,
                                 epochs=max(1, -(-args.steps * args.batch_size // max(1, len(trajectories)))),
                                 seed=0), trajectories)
    timings["train sft"] = time.perf_counter() - started
    # No KL figure: the probe measures only the policy's own samples, and this run has none.
    console.print(f"SFT: {result.steps} steps, final loss {result.final_metrics.get('loss', float('nan')):.3f} "
                  f"-> {policy}")

    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "timings": timings, "sets": {}}
    for name, n in (("nq", args.nq_test), ("hotpot", args.hotpot_test)):
        if not n:
            continue
        tasks, index = tasks_and_index(f"{name}:test", args.data, limit=n)
        retriever = load_index(index)
        reports = []
        for label, spec in (("base", args.model), ("demonstration SFT", str(policy))):
            started = time.perf_counter()
            reports.append(evaluate_llm(load_llm(spec), tasks, retriever=retriever, label=label,
                                        max_steps=args.max_steps))
            timings[f"test {name} {label}"] = time.perf_counter() - started
        table = Table(title=f"{name} TEST ({len(tasks)} questions, its TEST passages as the index)")
        table.add_column("metric")
        for r in reports:
            table.add_column(r.label, justify="right")
        for metric in ("success", "em", "f1"):
            table.add_row(metric, *(f"{getattr(r, metric):.1%} [{r.intervals[metric][0]:.0%}, "
                                    f"{r.intervals[metric][1]:.0%}]" for r in reports))
        table.add_row("statuses", *(", ".join(f"{k} {v}" for k, v in r.statuses.items()) for r in reports))
        console.print(table)
        paired = paired_differences(reports)
        console.print(paired_table(paired))
        summary["sets"][name] = {"reports": [r.model_dump(mode="json", exclude={"results"}) for r in reports],
                                 "paired": [d.model_dump() for d in paired]}
        for r in reports:
            (args.out / f"test-{name}-{r.label.replace(' ', '-')}.json").write_text(r.model_dump_json(indent=1))

    timings["total (wall, model loads included)"] = time.perf_counter() - began
    timing = Table(title="wall time")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for stage, seconds in timings.items():
        timing.add_row(stage, f"{seconds:.0f}")
    console.print(timing)
    (args.out / "bench_lookup.json").write_text(json.dumps(summary, indent=1))
    console.print(f"details in {args.out}")


if __name__ == "__main__":
    main()
