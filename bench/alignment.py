"""Before and after alignment on DEV tasks: the embedded model as the agent, then SFT, DPO
(and PPO with --ppo) trained on trajectories of *other* DEV questions, all measured on the
same evaluation questions and printed side by side.

    python bench/alignment.py                      # 30 arithmetic + 20 HotpotQA DEV questions
    python bench/alignment.py --arith 10 --hotpot 6 --train-arith 4 --train-hotpot 4
    python bench/alignment.py --quick              # a few questions, one step each: plumbing only

Data: arithmetic DEV (seeded) positions [0, N) for evaluation and [100, 100+M) for training;
HotpotQA DEV rows [0, N) for evaluation and [150, 150+M) for training; the search tool
searches an index over every HotpotQA DEV paragraph (built once, cached). TEST is never
touched. Rankings come from the simulated annotator (gold-answer scoring), so this measures
the training machinery on a known objective, not human preferences.

Reported per model: EM, token F1, success (finished and the gold answer appears in the
answer), parse errors per step and share of runs with one, mean steps, mean generated
tokens, generation tokens/s and wall time; and each training stage's wall time.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

EVAL_ARITH, EVAL_HOTPOT = 30, 20
TRAIN_ARITH_START, TRAIN_HOTPOT_START = 100, 150


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="starting policy (default: the embedded SmolLM2-135M)")
    p.add_argument("--arith", type=int, default=EVAL_ARITH, help="arithmetic DEV questions to evaluate on")
    p.add_argument("--hotpot", type=int, default=EVAL_HOTPOT, help="HotpotQA DEV questions to evaluate on")
    p.add_argument("--limit", type=int, help="cap both evaluation sets at N questions each")
    p.add_argument("--train-arith", type=int, default=8, help="arithmetic DEV questions to collect on")
    p.add_argument("--train-hotpot", type=int, default=8, help="HotpotQA DEV questions to collect on")
    p.add_argument("--samples", type=int, default=4, help="trajectories per training question (K)")
    p.add_argument("--max-steps", type=int, default=2,
                   help="agent steps per question (then a forced answer; see alignment/demo.py for why 2)")
    p.add_argument("--sft-steps", type=int, default=16)
    p.add_argument("--dpo-steps", type=int, default=16)
    p.add_argument("--ppo", action="store_true", help="also train a reward model and run PPO iterations")
    p.add_argument("--ppo-iterations", type=int, default=1)
    p.add_argument("--reward-steps", type=int, default=16)
    p.add_argument("--max-length", type=int, default=1024, help="training tokens per trajectory")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, numbers mean nothing")
    p.add_argument("--out", type=Path, help="run folder (default /tmp/rankact-bench-alignment-<time>)")
    p.add_argument("--data", type=Path, help="evaluation data folder (default ../shared/data)")
    args = p.parse_args(argv)
    if args.quick:
        args.arith, args.hotpot, args.train_arith, args.train_hotpot = 2, 2, 2, 1
        args.samples, args.max_steps, args.sft_steps, args.dpo_steps = 2, 2, 1, 1
        args.reward_steps, args.max_length = 1, 512
    if args.limit is not None:
        args.arith, args.hotpot = min(args.arith, args.limit), min(args.hotpot, args.limit)
    args.out = args.out or Path(f"/tmp/rankact-bench-alignment-{time.strftime('%Y%m%d-%H%M%S')}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    from agent.build import load_index
    from agent.llm import load_llm
    from alignment.cli.quiet import quiet_libraries
    from alignment.evaluation.evaluate import comparison_table, evaluate_llm
    from alignment.feedback.collect import collect
    from alignment.feedback.export import write_export
    from alignment.feedback.pairs import read_pairs
    from alignment.feedback.simulated import SimulatedAnnotator
    from alignment.feedback.store import TrajectoryStore
    from alignment.tasks.agents import TaskAgents
    from alignment.tasks.datasets import arith_tasks, hotpot_tasks
    from alignment.tasks.indexes import preset_index
    from alignment.training.dpo import DPOConfig, train_dpo
    from alignment.training.policy import LoraSettings
    from alignment.training.sft import SFTConfig, best_of_pairs, train_sft

    quiet_libraries()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str):
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    arith, hotpot = arith_tasks("dev", 200), hotpot_tasks("dev", args.data)
    eval_tasks = arith[: args.arith] + hotpot[: args.hotpot]
    train_tasks = (arith[TRAIN_ARITH_START: TRAIN_ARITH_START + args.train_arith]
                   + hotpot[TRAIN_HOTPOT_START: TRAIN_HOTPOT_START + args.train_hotpot])
    assert not {t.id for t in eval_tasks} & {t.id for t in train_tasks}, "train and eval questions overlap"
    console.print(f"command: python bench/alignment.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    console.print(f"evaluation: {args.arith} arithmetic + {args.hotpot} HotpotQA DEV questions; "
                  f"training: {len(train_tasks)} other DEV questions x {args.samples} samples; out: {out}")

    t0 = stage("index HotpotQA DEV paragraphs (cached after the first run)")
    retriever = load_index(preset_index("hotpot", "dev", args.data, progress=True))
    timings["index (or cache hit)"] = time.perf_counter() - t0

    def run_eval(model_spec: str, label: str):
        t = stage(f"evaluate {label} on {len(eval_tasks)} DEV questions")
        llm = load_llm(model_spec)
        report = evaluate_llm(llm, eval_tasks, retriever=retriever, label=label, max_steps=args.max_steps)
        timings[f"eval {label}"] = time.perf_counter() - t
        (out / f"eval-{label.replace(' ', '_')}.json").write_text(report.model_dump_json(indent=1))
        console.print(f"EM {report.em:.1%}  F1 {report.f1:.1%}  success {report.success:.1%}  "
                      f"parse errors/step {report.parse_error_rate:.1%}  ({report.wall_s:.0f}s)")
        return report, llm

    reports = []
    base_report, base_llm = run_eval(args.model, "base")
    reports.append(base_report)

    t0 = stage(f"collect {args.samples} trajectories x {len(train_tasks)} training questions")
    store = TrajectoryStore(f"sqlite:///{(out / 'store.db').resolve()}")
    from alignment.evaluation.evaluate import progress_bar

    with progress_bar(True, "collecting") as bar:
        job = bar.add_task("collecting", total=len(train_tasks) * args.samples)
        # each task gets the tools it names
        collected = collect(train_tasks, TaskAgents(base_llm, retriever=retriever, max_steps=args.max_steps), store,
                            samples=args.samples, temperature=0.7, seed=0, on_sample=lambda *_: bar.advance(job))
    added, by_status = collected.added, collected.by_status
    del base_llm
    rankings = SimulatedAnnotator("simulated-bench").annotate_all(store)
    pairs_path = out / "pairs.jsonl"
    n_pairs = write_export(store, "pairs", pairs_path)
    timings["collect + rank + export"] = time.perf_counter() - t0
    console.print(f"{added} trajectories {by_status}; {len(rankings)} simulated rankings; "
                  f"{n_pairs} pairs")
    if n_pairs == 0:
        console.print("[red]no preference pairs (every ranking all ties): nothing to train on[/]")
        return
    pairs = read_pairs(pairs_path)
    base_dir = _base_dir(args.model)
    lora = LoraSettings()

    t0 = stage(f"SFT on the top-ranked trajectories ({args.sft_steps} LoRA steps)")
    best = best_of_pairs(pairs)
    # enough epochs that --sft-steps, not one pass over the few top-ranked runs, sets the length
    epochs = max(1, -(-args.sft_steps * 2 // max(1, len(best))))
    train_sft(SFTConfig(out_dir=out / "sft", base=base_dir, lora=lora, max_steps=args.sft_steps, epochs=epochs,
                        max_length=args.max_length, batch_size=2), trajectories=best)
    timings["train SFT"] = time.perf_counter() - t0
    reports.append(run_eval(str(out / "sft"), "SFT")[0])

    t0 = stage(f"DPO on {n_pairs} pairs ({args.dpo_steps} LoRA steps)")
    train_dpo(DPOConfig(out_dir=out / "dpo", base=base_dir, lora=lora, max_steps=args.dpo_steps,
                        max_length=args.max_length, batch_size=2), pairs)
    timings["train DPO"] = time.perf_counter() - t0
    reports.append(run_eval(str(out / "dpo"), "DPO")[0])

    if args.ppo:
        from alignment.training.ppo.config import PPOConfig
        from alignment.training.ppo.rollout import reward_model_fn
        from alignment.training.ppo.trainer import train_ppo
        from alignment.training.reward.config import RewardTrainConfig
        from alignment.training.reward.train import train_reward

        t0 = stage(f"reward model ({args.reward_steps} LoRA steps) + PPO ({args.ppo_iterations} iterations)")
        train_reward(RewardTrainConfig(base=base_dir, out_dir=out / "reward", lora=RewardTrainConfig.DEFAULT_LORA,
                                       max_steps=args.reward_steps, batch_size=4, learning_rate=1e-4,
                                       max_length=args.max_length, norm_samples=32), pairs)
        train_ppo(PPOConfig(out_dir=out / "ppo", base=base_dir, lora=lora, iterations=args.ppo_iterations,
                            samples=min(args.samples, 4), agent_max_steps=args.max_steps,
                            max_length=args.max_length),
                  reward_fn=reward_model_fn(out / "reward"), tasks=train_tasks,
                  agent_factory=lambda llm: TaskAgents(llm, retriever=retriever, max_steps=args.max_steps))
        timings["train reward model + PPO"] = time.perf_counter() - t0
        reports.append(run_eval(str(out / "ppo"), "PPO")[0])

    console.rule("[bold]results")
    console.print(comparison_table(reports, title=f"DEV: {args.arith} arithmetic + {args.hotpot} HotpotQA "
                                   f"questions, agent max {args.max_steps} steps"))
    by_source = Table(title="success by dataset")
    by_source.add_column("dataset")
    for r in reports:
        by_source.add_column(r.label, justify="right")
    for prefix in ("arith", "hotpot"):
        row = []
        for r in reports:
            rs = [x for x in r.results if x.task_id.startswith(prefix)]
            row.append(f"EM {sum(x.em for x in rs) / len(rs):.0%} / succ {sum(x.success for x in rs) / len(rs):.0%}"
                       if rs else "-")
        by_source.add_row(prefix, *row)
    console.print(by_source)
    timing = Table(title="wall time per stage")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        timing.add_row(name, f"{seconds:.0f}")
    console.print(timing)
    (out / "bench_alignment.json").write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()}, "timings": timings,
        "reports": [r.model_dump(mode="json", exclude={"results"}) for r in reports],
    }, indent=1))
    console.print(f"details in {out}")


def _base_dir(model: str) -> str:
    from agent.llm.local import resolve_model_dir

    return str(resolve_model_dir(model)[0])


if __name__ == "__main__":
    main()
