"""How a plain-chat mix of written refusals and replayed benign replies moves refusals, in
minutes instead of a 30-minute recipe: train the replay term alone (LoRA, as the trainers do)
on a starting policy, then measure refusals on AdvBench DEV and on benign DEV requests that
were not trained on, beside the starting policy measured in the same run. DEV only: this is
for choosing a mix, never for reporting.

    python bench/refusal_mix.py --start runs/with-lookup/round-2/policy --refusals 8 --benign 30
    python bench/refusal_mix.py --quick          # tiny sizes: checks the plumbing, numbers mean nothing

Why: a refusal that is written, not sampled, teaches a new behaviour, and what the model
generalizes from it (the harm, or the imperative form of the request) decides whether the
recipe over-refuses; the benign set (`alignment/tasks/data/benign_requests.jsonl`, half of it
safe requests in harmful-sounding words) is there to catch the second.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENIGN_EVAL_FROM = 30  # benign DEV rows 30-59 are measured, so at most 30 can be replayed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", default="base", help="policy the mix is trained on (a model folder, base, default)")
    p.add_argument("--refusals", type=int, default=8, help="written refusals of AdvBench DEV rows 0..N-1")
    p.add_argument("--benign", type=int, default=30, help=f"the start's sampled replies to benign DEV rows 0..N-1 "
                                                          f"(at most {BENIGN_EVAL_FROM})")
    p.add_argument("--nq", type=int, default=16, help="the start's sampled replies to NQ DEV questions")
    p.add_argument("--steps", type=int, default=96, help="optimizer steps (the default recipe: 2 rounds x 48)")
    p.add_argument("--batch-size", type=int, default=2, help="replayed replies a step (the trainers' default)")
    p.add_argument("--lr", type=float, default=2e-4, help="LoRA learning rate")
    p.add_argument("--advbench-eval", type=int, default=100, help="AdvBench DEV requests measured, from row "
                                                                 "max(32, --refusals) on")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, numbers mean nothing")
    p.add_argument("--out", type=Path, help="run folder (default: a temporary one)")
    p.add_argument("--data", type=Path, help="evaluation data folder (default ../shared/data)")
    args = p.parse_args(argv)
    if args.quick:
        args.refusals, args.benign, args.nq, args.steps, args.advbench_eval = 2, 2, 1, 2, 2
    args.benign_eval = 2 if args.quick else 30  # benign DEV rows 30-59
    if not 0 <= args.benign <= BENIGN_EVAL_FROM:
        p.error(f"--benign must be 0-{BENIGN_EVAL_FROM}: rows from {BENIGN_EVAL_FROM} on are measured")
    return args


def main(argv: list[str] | None = None) -> None:
    import torch
    from rich.console import Console

    from rankact.agent.llm import load_llm
    from rankact.alignment.evaluation.refusal import paired_refusals, refusal_eval, refusal_table
    from rankact.alignment.evaluation.significance import PairedDifference
    from rankact.alignment.feedback.demonstrations.refusal import refusal_examples
    from rankact.alignment.tasks.datasets import advbench_tasks, benign_tasks, nq_tasks
    from rankact.alignment.training.config import ReplaySettings
    from rankact.alignment.training.policy import LoraSettings, load_policy, save_policy
    from rankact.alignment.training.replay import ReplayTerm, generate_replay, write_replay
    from rankact.alignment.training.tokenize import pad_token_id

    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="rankact-bench-refusal-mix-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    advbench = advbench_tasks("dev", args.data)
    first_unseen = max(32, args.refusals)
    measured = {"AdvBench DEV": advbench[first_unseen : first_unseen + args.advbench_eval],
                "benign DEV": benign_tasks("dev")[BENIGN_EVAL_FROM : BENIGN_EVAL_FROM + args.benign_eval]}

    start_llm = load_llm(args.start)
    benign = generate_replay(start_llm, [benign_tasks("dev")[: args.benign]], args.benign) if args.benign else []
    nq = generate_replay(start_llm, [nq_tasks("dev", args.data)], args.nq) if args.nq else []
    replies = benign + nq
    mix = replies + refusal_examples(start_llm, advbench, args.refusals)
    write_replay(out / "mix.jsonl", mix)
    before = {name: refusal_eval(start_llm, tasks, label="start") for name, tasks in measured.items()}
    del start_llm

    torch.manual_seed(0)
    model, tokenizer = load_policy(args.start, LoraSettings())
    term = ReplayTerm.load(ReplaySettings(replay=out / "mix.jsonl", replay_batch_size=args.batch_size), 768, 0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    model.train()
    for step in range(args.steps):
        loss = term.loss(model, step, pad_token_id(tokenizer), "cpu")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    save_policy(model.eval(), tokenizer, out / "policy")
    trained_at = time.perf_counter()

    trained_llm = load_llm(str(out / "policy"))
    console = Console()
    for name, tasks in measured.items():
        after = refusal_eval(trained_llm, tasks, label="after the mix")
        reports = [before[name], after]
        paired: list[PairedDifference] = paired_refusals(reports)
        console.print(refusal_table(reports, title=f"{name}, {len(tasks)} requests not trained on"))
        for difference in paired:
            console.print(f"  paired: {difference.difference:+.1%} [{difference.low:+.1%}, {difference.high:+.1%}], "
                          f"{difference.gained} gained / {difference.lost} lost, McNemar p {difference.p_value:.2g}")
    console.print(f"mix: {args.refusals} written refusals, {len(benign)} benign and {len(nq)} NQ replies of the start; "
                  f"{args.steps} steps of {args.batch_size}; training {trained_at - started:.0f} s with the start's "
                  f"evals, total {time.perf_counter() - started:.0f} s; run folder {out}")


if __name__ == "__main__":
    main()
