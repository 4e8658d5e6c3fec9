"""Does training from rankings make the agent better on questions it never saw? Train on DEV,
report on TEST: the base model beside each trainer after the same rounds and rollouts.

    python bench/alignment.py                          # CPU defaults (27 min measured on 2 idle cores)
    python bench/alignment.py --arith-test 200 --hotpot-test 200 --nq-test 300 --advbench-test 100 \\
        --train-arith 48 --train-hotpot 24 --rounds 3 --samples 8    # the full TEST sets (GPU)
    python bench/alignment.py --quick --model DIR      # plumbing only: tiny sizes, numbers mean nothing

Training: `rankact align rounds` once per method (best-of-K SFT, DPO, group-relative from
rankings; PPO with a reward model with --ppo), every method from the same starting policy on
the same DEV training questions with the same K and rounds. Round 1's rollouts come from the
starting policy with the same seeds, so they are collected once and shared. Rankings come from
the SIMULATED annotator (gold-answer scoring): this measures the training machinery on a known
objective, not human preferences. The rounds' own held-out check uses DEV questions.

Report (TEST only, never tuned on): arithmetic with the calculator, HotpotQA and NQ with their
TEST passages as the index, and the AdvBench TEST refusal rate as a safety column. Per method:
success and EM with 95% intervals, the paired difference against base with its bootstrap
interval and the exact McNemar p, and wall times.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console
from rich.table import Table

TRAIN_HOTPOT_START = 150  # HotpotQA DEV rows used for training (the rounds' DEV check uses arithmetic)
DEV_CHECK_START = 100  # arithmetic DEV positions of the rounds' held-out check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="base", help="starting policy (base: the embedded SmolLM2-135M, untuned)")
    p.add_argument("--methods", default="sft,dpo,grpo", help="comma-separated: sft, dpo, grpo")
    p.add_argument("--ppo", action="store_true", help="also train a reward model and run PPO (slow on CPU)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--samples", type=int, default=4, help="trajectories per training question and round (K)")
    p.add_argument("--train-arith", type=int, default=12, help="arithmetic DEV training questions")
    p.add_argument("--train-hotpot", type=int, default=0, help="HotpotQA DEV training questions")
    p.add_argument("--train-steps", type=int, default=12,
                   help="optimizer steps per round (12, the default recipe's: on DEV, SFT's KL passed the budget at 24)")
    p.add_argument("--replay", help="DEV request sets whose sampled plain replies every method replays while "
                                    "training (e.g. nq:dev; see alignment.training.replay); default none")
    p.add_argument("--dev-check", type=int, default=8, help="DEV arithmetic questions the rounds check on")
    p.add_argument("--arith-test", type=int, default=40, help="arithmetic TEST questions (all: 200)")
    p.add_argument("--hotpot-test", type=int, default=12, help="HotpotQA TEST questions (all: 200)")
    p.add_argument("--nq-test", type=int, default=12, help="NQ TEST questions (all: 300+)")
    p.add_argument("--advbench-test", type=int, default=20, help="AdvBench TEST requests for the refusal rate")
    p.add_argument("--max-steps", type=int, default=3, help="agent steps per question")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, numbers mean nothing")
    p.add_argument("--out", type=Path, help="run folder (default /tmp/rankact-bench-alignment-<time>)")
    p.add_argument("--data", type=Path, help="evaluation data folder (default ../shared/data)")
    args = p.parse_args(argv)
    if args.quick:
        args.train_arith, args.train_hotpot, args.samples, args.max_steps = 2, 0, 2, 1
        args.train_steps, args.dev_check, args.arith_test = 1, 2, 2
        args.hotpot_test = args.nq_test = args.advbench_test = 2
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - {"sft", "dpo", "grpo"}
    if unknown:
        p.error(f"unknown method(s) {', '.join(sorted(unknown))}: use sft, dpo, grpo (and --ppo)")
    args.out = args.out or Path(f"/tmp/rankact-bench-alignment-{time.strftime('%Y%m%d-%H%M%S')}")
    return args


def training_tasks(args, out: Path) -> Path:
    from rankact.alignment.tasks import write_tasks
    from rankact.alignment.tasks.datasets import arith_tasks, hotpot_tasks

    tasks = arith_tasks("dev")[: args.train_arith]
    if args.train_hotpot:
        tasks += hotpot_tasks("dev", args.data)[TRAIN_HOTPOT_START : TRAIN_HOTPOT_START + args.train_hotpot]
    path = out / "train-dev.jsonl"
    write_tasks(tasks, path)
    return path


def train_method(method: str, args, out: Path, train_file: Path, shared_round1: Path | None, console) -> str:
    """Rounds of one method; returns its final policy."""
    from rankact.alignment.rounds import Rounds, RoundsConfig
    from rankact.alignment.tasks.indexes import preset_index

    folder = out / method
    if shared_round1 is not None and not (folder / "round-1" / "stages.json").is_file():
        # Round 1's rollouts come from the same starting policy with the same seeds: reuse them.
        (folder / "round-1").mkdir(parents=True, exist_ok=True)
        shutil.copytree(shared_round1.parent / "round-0", folder / "round-0", dirs_exist_ok=True)
        _copy_store(shared_round1 / "store.db", folder / "round-1" / "store.db")
        stages = json.loads((shared_round1 / "stages.json").read_text())
        (folder / "round-1" / "stages.json").write_text(json.dumps({"collect": stages["collect"]}))
    index = preset_index("hotpot", "dev", args.data) if args.train_hotpot else None
    config = RoundsConfig(out_dir=folder, tasks=str(train_file), heldout="arith:dev", heldout_skip=DEV_CHECK_START,
                          heldout_limit=args.dev_check, base=args.model, rounds=args.rounds, samples=args.samples,
                          agent_max_steps=args.max_steps, method=method, train_steps=args.train_steps, index=index,
                          replay=args.replay, data=args.data)
    records = Rounds(config, say=lambda line: console.print(f"  [{method}] {line}")).run()
    return records[-1].policy


def _copy_store(src: Path, dst: Path) -> None:
    import sqlite3

    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
        b.execute("DELETE FROM rankings")  # each method ranks with its own annotator run


def test_sets(args) -> list[tuple[str, list, Path | None]]:
    from rankact.alignment.tasks.indexes import tasks_and_index

    sets = []
    for name, n in (("arith", args.arith_test), ("hotpot", args.hotpot_test), ("nq", args.nq_test)):
        if n:
            tasks, index = tasks_and_index(f"{name}:test", args.data, limit=n)
            sets.append((name, tasks, index))
    return sets


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.perf_counter()
    console = Console()
    from rankact.agent.build import load_index
    from rankact.agent.llm import load_llm
    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.alignment.evaluation.evaluate import evaluate_llm, paired_differences

    quiet_libraries()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"command: python bench/alignment.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    timings: dict[str, float] = {}
    train_file = training_tasks(args, out)

    policies = {"base": args.model}
    shared = None
    for method in args.methods:
        started = time.perf_counter()
        console.rule(f"[bold]train {method} on DEV ({args.rounds} round(s), K={args.samples})")
        policies[method] = train_method(method, args, out, train_file, shared, console)
        shared = shared or out / method / "round-1"
        timings[f"train {method}"] = time.perf_counter() - started
    if args.ppo:
        started = time.perf_counter()
        ppo_policy = train_ppo(args, out, train_file, shared, console)
        if ppo_policy:
            policies["ppo"] = ppo_policy
            timings["train ppo"] = time.perf_counter() - started

    sets = test_sets(args)
    results: dict[str, dict[str, object]] = {name: {} for name, _, _ in sets}
    refusals: dict[str, object] = {}  # label -> RefusalReport
    for label, spec in policies.items():
        llm = load_llm(spec)
        for name, tasks, index in sets:
            started = time.perf_counter()
            report = evaluate_llm(llm, tasks, retriever=load_index(index) if index else None, label=label,
                                  max_steps=args.max_steps)
            results[name][label] = report
            timings[f"test {name} {label}"] = time.perf_counter() - started
            (out / f"test-{name}-{label}.json").write_text(report.model_dump_json(indent=1))
            console.print(f"{label} on {name} TEST: success {report.success:.1%} {_ci(report, 'success')}")
        if args.advbench_test:
            from rankact.alignment.evaluation.refusal import refusal_eval
            from rankact.alignment.tasks.datasets import advbench_tasks

            started = time.perf_counter()
            report = refusal_eval(llm, advbench_tasks("test", args.data)[: args.advbench_test], mode="generate",
                                  label=label)
            refusals[label] = report
            timings[f"advbench {label}"] = time.perf_counter() - started
        del llm

    console.rule("[bold]TEST results (trained on DEV only)")
    labels = list(policies)
    table = Table(title=f"success [95% CI] / EM; rankings SIMULATED from gold answers; {args.rounds} round(s), "
                        f"K={args.samples}")
    table.add_column("test set")
    for label in labels:
        table.add_column(label, justify="right")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "timings": timings, "sets": {}}
    for name, tasks, _ in sets:
        reports = [results[name][label] for label in labels]
        table.add_row(f"{name} ({len(tasks)})", *(f"{r.success:.0%} {_ci(r, 'success')} / {r.em:.0%}" for r in reports))
        paired = {d.other: d for d in paired_differences(reports) if d.metric == "success"}
        table.add_row("  vs base: Δ success, p", "", *(
            f"{paired[label].difference:+.0%} [{paired[label].low:+.0%}, {paired[label].high:+.0%}], "
            f"p={paired[label].p_value:.2g}" for label in labels[1:]))
        summary["sets"][name] = {"reports": [r.model_dump(mode="json", exclude={"results"}) for r in reports],
                                 "paired": [d.model_dump() for d in paired.values()]}
    if refusals:
        from rankact.alignment.evaluation.refusal import paired_refusals

        reports = [refusals[label] for label in labels]
        table.add_row(f"AdvBench refusal ({args.advbench_test})", *(
            f"{r.refusal_rate:.0%} [{r.refusal_interval[0]:.0%}, {r.refusal_interval[1]:.0%}]" for r in reports))
        paired = paired_refusals(reports)
        table.add_row("  vs base: Δ refusal, p", "", *(f"{d.difference:+.0%} ({d.gained}/{d.lost}), p={d.p_value:.2g}"
                                                       for d in paired))
        summary["refusals"] = {label: r.model_dump(mode="json", exclude={"results"}) for label, r in refusals.items()}
        summary["refusals_paired"] = [d.model_dump() for d in paired]
    console.print(table)
    timing = Table(title="wall time")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        timing.add_row(name, f"{seconds:.0f}")
    total = "total (wall, model loads included)"
    timings[total] = time.perf_counter() - began
    timing.add_row(total, f"{timings[total]:.0f}")
    console.print(timing)
    (out / "bench_alignment.json").write_text(json.dumps(summary, indent=1))
    console.print(f"details in {out}")


def _ci(report, metric: str) -> str:
    low, high = report.intervals[metric]
    return f"[{low:.0%}, {high:.0%}]"


def train_ppo(args, out: Path, train_file: Path, shared_round1: Path | None, console) -> str | None:
    """A reward model on round 1's simulated rankings, then PPO iterations with live tools; None
    when round 1's rankings hold no pair to learn from (every group tied)."""
    from rankact.agent.llm.local import resolve_model_dir
    from rankact.alignment.errors import PairFileError
    from rankact.alignment.feedback.preferences.export import write_export
    from rankact.alignment.feedback.preferences.pairs import read_pairs
    from rankact.alignment.tasks import load_tasks
    from rankact.alignment.tasks.agents import TaskAgents
    from rankact.alignment.training.policy import LoraSettings
    from rankact.alignment.training.ppo.config import PPOConfig
    from rankact.alignment.training.ppo.rollout import reward_model_fn
    from rankact.alignment.training.ppo.trainer import train_ppo as run_ppo
    from rankact.alignment.training.reward.config import RewardTrainConfig
    from rankact.alignment.training.reward.train import train_reward

    if shared_round1 is None:
        raise SystemExit("--ppo needs at least one other method (its round-1 rankings train the reward model)")
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    console.rule("[bold]reward model + PPO")
    base = str(resolve_model_dir(args.model)[0])
    pairs_path = out / "ppo-pairs.jsonl"
    with TrajectoryStore(f"sqlite:///{(shared_round1 / 'store.db').resolve()}", create=False) as store:
        write_export(store, "pairs", pairs_path)
    try:
        pairs = read_pairs(pairs_path)
    except PairFileError as exc:
        console.print(f"  [ppo] no reward model to train ({exc}): PPO is left out of the table")
        return None
    train_reward(RewardTrainConfig(base=base, out_dir=out / "reward", lora=RewardTrainConfig.DEFAULT_LORA,
                                   max_steps=args.train_steps, batch_size=4, learning_rate=1e-4, norm_samples=32),
                 pairs)
    # The same rollouts as the other methods: every training question once per round, K samples.
    tasks = load_tasks(train_file)
    per_iteration = min(4, len(tasks))
    run_ppo(PPOConfig(out_dir=out / "ppo", base=base, lora=LoraSettings(), samples=args.samples,
                      iterations=args.rounds * -(-len(tasks) // per_iteration), tasks_per_iteration=per_iteration,
                      agent_max_steps=args.max_steps),
            reward_fn=reward_model_fn(out / "reward"), tasks=tasks,
            agent_factory=lambda llm: TaskAgents(llm, max_steps=args.max_steps))
    return str(out / "ppo")


if __name__ == "__main__":
    main()
