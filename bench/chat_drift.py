"""How far did training on one task move a model elsewhere? Per token KL(base || model) over
base's own greedy plain replies to NQ questions (general chat) and AdvBench requests (harmful),
with the full next-token distributions of both models: 0 means the model still answers plain
requests as base does. The baseline is base itself (0 by construction); compare trained models
side by side, e.g. the shipped adapter against a policy trained without replay.

    python bench/chat_drift.py --model default --model runs/no-replay/round-2/policy   # TEST rows
    python bench/chat_drift.py --split dev --skip 100 --model ...                        # DEV, for tuning
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="a trained model (default, a folder); repeat")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--skip", type=int, default=0, help="skip the first N requests of each set (DEV rows replayed)")
    p.add_argument("--limit", type=int, default=60, help="requests per set")
    p.add_argument("--data", type=Path, help="evaluation data folder (default ../shared/data)")
    args = p.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM

    from rankact.agent.llm import GenerationConfig, load_llm
    from rankact.agent.llm.local import resolve_model_dir
    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.alignment.evaluation.refusal import plain_prompt_ids
    from rankact.alignment.tasks.datasets import advbench_tasks, nq_tasks

    quiet_libraries()
    window = slice(args.skip, args.skip + args.limit)
    sets = {"NQ (general)": nq_tasks(args.split, args.data)[window],
            "AdvBench (harmful)": advbench_tasks(args.split, args.data)[window]}
    started = time.perf_counter()
    base = load_llm("base")
    greedy = GenerationConfig(max_new_tokens=64, temperature=0.0)
    replies: dict[str, list[tuple[list[int], list[int]]]] = {}
    for name, tasks in sets.items():
        prompts = [plain_prompt_ids(base, t.question) for t in tasks]
        done = []
        for i in range(0, len(prompts), 16):
            chunk = prompts[i : i + 16]
            done += [(p, c.token_ids or []) for p, c in zip(chunk, base.continue_batch(chunk, [greedy] * len(chunk)),
                                                              strict=True)]
        replies[name] = [(p, r) for p, r in done if r]
    del base

    def reply_logprobs(folder: Path) -> dict[str, list[torch.Tensor]]:
        """Per set, per reply: log-softmax at each reply position, [reply tokens, vocab]."""
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
        out: dict[str, list[torch.Tensor]] = {}
        with torch.inference_mode():
            for name, pairs in replies.items():
                out[name] = [torch.log_softmax(model(torch.tensor([p + r])).logits[0, len(p) - 1 : -1].float(), -1)
                             for p, r in pairs]
        return out

    reference = reply_logprobs(resolve_model_dir("base")[0])
    table = Table(title=f"KL(base || model) per token on base's greedy plain replies, {args.split.upper()} "
                        f"rows {args.skip}-{args.skip + args.limit - 1}")
    table.add_column("model")
    for name in sets:
        table.add_column(name, justify="right")
    table.add_row("base (baseline)", *("0" for _ in sets))
    for spec in args.model:
        trained = reply_logprobs(resolve_model_dir(spec)[0])
        cells = []
        for name in sets:
            total = sum(float((a.exp() * (a - b)).sum()) for a, b in zip(reference[name], trained[name], strict=True))
            tokens = sum(a.shape[0] for a in reference[name])
            cells.append(f"{total / max(tokens, 1):.4f}")
        table.add_row(spec, *cells)
    Console().print(table)
    print(f"{sum(len(v) for v in replies.values())} replies; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
