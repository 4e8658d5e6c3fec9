"""Rollout speed, everything side by side in one run, each figure beside its baseline.

    .venv/bin/python bench/rollout_speed.py                  # all of it (~15 min on 2 free cores)
    .venv/bin/python bench/rollout_speed.py --questions 10   # a shorter agent comparison
    .venv/bin/python bench/rollout_speed.py --skip-agent --skip-ask --skip-memory

Rows:
  * decoding tokens/s on the embedded SmolLM2-135M: plain `model.generate` batch 1 (the
    baseline), rankact's PyTorch backend batch 1, the CTranslate2 int8 engine batch 1, and
    K=8 sampled rows (one prompt, eight seeds) in lockstep on each;
  * agent trajectories per minute on the DEV questions of bench/agent_format.py (arithmetic,
    HotpotQA, NQ; each QA question searches its own passages), one at a time (the path before
    lockstep rollouts) vs `rankact.agent.batch.run_batch`, with parse errors per step for both;
  * the wall time of `rankact ask` on five arithmetic DEV questions (one process each);
  * DPO peak memory at 1024 tokens, 2 pairs per step (bench/train_memory.py, when present).

Targets (issue "Fast rollouts"): batch-1 greedy >= 2x plain generate; K=8 sampled >= 8x plain
generate batch 1 in aggregate; trajectories/min >= 5x the sequential path with 0% parse errors.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

PROMPT = "Write a long story about a dragon who learns to cook."


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def decoding(args) -> list[tuple[str, float, str]]:
    import torch

    from rankact.agent.llm import GenerationConfig
    from rankact.agent.llm.local import TransformersLLM

    rows: list[tuple[str, float, str]] = []
    llm = TransformersLLM("default")
    ids = llm.encode(llm.render_prompt(PROMPT))
    n = args.tokens
    greedy = GenerationConfig(max_new_tokens=n)
    # warm-up (first-call allocations), then the measured calls
    llm.continue_ids(ids, GenerationConfig(max_new_tokens=4))
    with torch.inference_mode():
        prompt = torch.tensor([ids])
        t = time.perf_counter()
        out = llm.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=llm.pad_id)
        plain = _rate(out.shape[1] - len(ids), time.perf_counter() - t)
    rows.append(("plain model.generate, batch 1 greedy", plain, "baseline"))
    llm.clear_cache()
    t = time.perf_counter()
    c = llm.continue_ids(ids, greedy)
    ours = _rate(c.completion_tokens, time.perf_counter() - t)
    rows.append(("rankact PyTorch backend, batch 1 greedy", ours, f"{ours / plain:.2f}x"))
    sampled = [GenerationConfig(max_new_tokens=n, temperature=1.0, seed=s) for s in range(8)]
    llm.clear_cache()
    t = time.perf_counter()
    outs = llm.continue_batch([ids] * 8, sampled)
    k8 = _rate(sum(o.completion_tokens for o in outs), time.perf_counter() - t)
    rows.append(("rankact PyTorch lockstep K=8 sampled (aggregate)", k8, f"{k8 / plain:.2f}x"))
    try:
        from rankact.agent.llm.ct2 import CTranslate2LLM
    except ImportError:
        rows.append(("CTranslate2 int8 engine", 0.0, "not installed"))
        return rows
    engine = CTranslate2LLM("default")
    engine.continue_ids(ids, GenerationConfig(max_new_tokens=4))
    t = time.perf_counter()
    c = engine.continue_ids(ids, greedy)
    e1 = _rate(c.completion_tokens, time.perf_counter() - t)
    rows.append(("CTranslate2 int8, batch 1 greedy", e1, f"{e1 / plain:.2f}x"))
    unseeded = [GenerationConfig(max_new_tokens=n, temperature=1.0) for _ in range(8)]
    t = time.perf_counter()
    outs = engine.continue_batch([ids] * 8, unseeded)
    e8 = _rate(sum(o.completion_tokens for o in outs), time.perf_counter() - t)
    rows.append(("CTranslate2 int8, K=8 sampled unseeded (aggregate)", e8, f"{e8 / plain:.2f}x"))
    t = time.perf_counter()
    outs = engine.continue_batch([ids] * 8, sampled)
    e8s = _rate(sum(o.completion_tokens for o in outs), time.perf_counter() - t)
    rows.append(("CTranslate2 int8, K=8 sampled seeded (aggregate)", e8s, f"{e8s / plain:.2f}x"))
    return rows


def agent_rollouts(args) -> list[tuple[str, float, str]]:
    from agent_format import load_questions, retriever_for

    from rankact.agent.batch import Job, run_batch
    from rankact.agent.build import build_agent
    from rankact.agent.llm.local import DecodeSession, TransformersLLM

    n = args.questions
    items = load_questions(Path(args.data), n * 2 // 5, (n - n * 2 // 5) // 2, n - n * 2 // 5 - (n - n * 2 // 5) // 2)
    llm = TransformersLLM("default")
    agents = [build_agent(llm, retriever=retriever_for(item), search_k=2, search_mode="bm25",
                          max_steps=args.max_steps) for item in items]
    rows = []
    t = time.perf_counter()
    sequential = [agent.run(item["question"]) for agent, item in zip(agents, items, strict=True)]
    seq_s = time.perf_counter() - t
    llm.clear_cache()
    t = time.perf_counter()
    batched = run_batch([Job(agent, item["question"]) for agent, item in zip(agents, items, strict=True)],
                        batch_size=args.batch_size)
    bat_s = time.perf_counter() - t
    llm.clear_cache()
    DecodeSession.in_place = False  # the batch copied whole at every join and leave (before in-place slots)
    try:
        t = time.perf_counter()
        copied = run_batch([Job(agent, item["question"]) for agent, item in zip(agents, items, strict=True)],
                           batch_size=args.batch_size)
        copy_s = time.perf_counter() - t
    finally:
        DecodeSession.in_place = True

    def parse_rate(runs) -> str:
        steps = sum(len(r.steps) for r in runs)
        return f"{sum(r.parse_errors for r in runs)}/{steps} parse errors"

    seq_rate, bat_rate = len(items) / seq_s * 60, len(items) / bat_s * 60
    rows.append((f"agent trajectories/min, {len(items)} DEV questions, one at a time", seq_rate,
                 f"baseline; {parse_rate(sequential)}"))
    rows.append((f"agent trajectories/min, lockstep batch {args.batch_size}", bat_rate,
                 f"{bat_rate / seq_rate:.2f}x; {parse_rate(batched)}"))
    copy_rate = len(items) / copy_s * 60
    rows.append((f"agent trajectories/min, lockstep batch {args.batch_size}, batch copied at every join/leave",
                 copy_rate, f"{copy_rate / seq_rate:.2f}x; in place is {bat_rate / copy_rate:.2f}x this"))
    same = sum(a.final_answer == b.final_answer for a, b in zip(sequential, batched, strict=True))
    rows.append(("greedy answers equal, lockstep in place vs copied", sum(
        a.final_answer == b.final_answer for a, b in zip(batched, copied, strict=True)), f"of {len(items)}"))
    rows.append(("greedy answers equal, one at a time vs lockstep", same, f"of {len(items)}"))
    return rows


def ask_wall(args) -> list[tuple[str, float, str]]:
    from rankact.alignment.tasks.datasets import arith_tasks

    rankact = str(Path(sys.executable).with_name("rankact"))
    t = time.perf_counter()
    for task in arith_tasks("dev", 5):
        subprocess.run([rankact, "ask", task.question, "--json"], check=True, capture_output=True, text=True)
    return [("`rankact ask` on 5 arithmetic DEV questions, wall s", time.perf_counter() - t,
             "five processes, model load included")]


def memory(args) -> list[tuple[str, float, str]]:
    script = ROOT / "bench" / "train_memory.py"
    if not script.is_file():
        return [("DPO peak memory", 0.0, "bench/train_memory.py not present")]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    print(out.stdout[-3000:])
    return [("DPO peak memory (see bench/train_memory.py above)", 0.0, "")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--skip-ask", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    rows = decoding(args)
    if not args.skip_agent:
        rows += agent_rollouts(args)
    if not args.skip_ask:
        rows += ask_wall(args)
    if not args.skip_memory:
        rows += memory(args)
    print(f"\n{'measurement':62s} {'figure':>10s}  vs baseline")
    for name, value, note in rows:
        print(f"{name:62s} {value:10.1f}  {note}")


if __name__ == "__main__":
    main()
