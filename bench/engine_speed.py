"""CTranslate2 int8 engine vs PyTorch on the embedded SmolLM2-135M, side by side.

    python bench/engine_speed.py [--tokens 64] [--batch 8]

Prints: conversion time (into a fresh cache folder), greedy tok/s at batch 1 (engine
`continue_ids` vs plain `model.generate`), aggregate tok/s of `batch` sampled rows (engine
unseeded = one batched call, engine seeded = one fresh generator per row, PyTorch
`model.generate` batch), and the mean |delta log p| per token between the engine's
`score_batch` and a teacher-forced PyTorch forward on the same tokens. Numbers depend on
what else runs on the machine: run it alone.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _rate(fn, tokens: int) -> float:
    start = time.perf_counter()
    produced = fn()
    return (produced if produced is not None else tokens) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    import torch

    from rankact.agent.llm import GenerationConfig, as_messages
    from rankact.agent.llm.ct2 import CTranslate2LLM
    from rankact.agent.llm.local import TransformersLLM
    from rankact.agent.llm.model_files import default_model_dir
    from rankact.agent.llm.parity import mean_logprob_gap

    folder = default_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        engine = CTranslate2LLM(folder, cache_dir=Path(tmp))
        conversion = engine.conversion_seconds
    engine = CTranslate2LLM(folder)  # the ordinary cached copy
    ref = TransformersLLM(folder)
    n, b = args.tokens, args.batch
    ids = engine.encode(engine.render_prompt(as_messages("Write a long story about a lighthouse keeper.")))
    # never stop early: no stop strings, and end-of-sequence banned below
    greedy = GenerationConfig(max_new_tokens=n)
    engine.continue_ids(ids, GenerationConfig(max_new_tokens=2))  # warm-up

    def engine_greedy():
        return engine.continue_ids(ids, greedy).completion_tokens

    def torch_generate(rows: int, sample: bool):
        def run():
            with torch.inference_mode():
                x = torch.tensor([ids] * rows)
                ref.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                                   do_sample=sample, temperature=1.0 if sample else None, top_p=None, top_k=None,
                                   pad_token_id=ref.pad_id)
            return rows * n
        return run

    def engine_sampled(seed):
        config = GenerationConfig(max_new_tokens=n, temperature=1.0, seed=seed)
        return lambda: sum(c.completion_tokens for c in engine.sample_ids(ids, config, b))

    rows = [
        ("greedy, batch 1", _rate(engine_greedy, n), _rate(torch_generate(1, False), n)),
        (f"sampled, batch {b}, aggregate", _rate(engine_sampled(None), n * b), _rate(torch_generate(b, True), n * b)),
        (f"sampled + seeded, {b} rows", _rate(engine_sampled(0), n * b), float("nan")),
    ]
    text = ids + ref.continue_ids(ids, greedy).token_ids
    print(f"prompt {len(ids)} tokens, {n} new tokens per row; threads {engine.threads}")
    print(f"conversion to CTranslate2 int8: {conversion:.1f} s (cached afterwards)")
    print(f"{'':32s} {'ctranslate2 int8':>18s} {'pytorch fp32':>14s}")
    for label, ours, theirs in rows:
        print(f"{label:32s} {ours:14.1f} tok/s {theirs:9.1f} tok/s")
    print("(engine rows end early at end-of-sequence; their tok/s counts the tokens produced)")
    print(f"mean |delta log p| per token, engine vs PyTorch, {len(text) - 1} tokens: "
          f"{mean_logprob_gap(engine, ref.model, text):.4f} nats")


if __name__ == "__main__":
    main()
