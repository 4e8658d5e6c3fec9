"""Tokens/s through an OpenAI-compatible server beside the in-process backend: same prompt,
same max tokens, greedy, the embedded SmolLM2-135M on both sides (the server runs its GGUF).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/served_speed.py --server http://127.0.0.1:PORT/v1 [--tokens 64] [--runs 3]

Start the server first, e.g. with llama-cpp-python[server] in its own venv (docs/served-models.md):
    $RANKACT_LLAMACPP_PYTHON -m llama_cpp.server --model <embedded GGUF> --port PORT --n_threads 2
Without --server only the in-process figures are printed. Completion tokens are the backend's
own count (the server's `usage`), timed from request to full reply, first run (warm-up) dropped.
"""
from __future__ import annotations

import argparse
import statistics

from rankact.agent.llm import GenerationConfig, load_llm

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


def tokens_per_second(llm, tokens: int, runs: int) -> tuple[float, int]:
    config = GenerationConfig(max_new_tokens=tokens, temperature=0.0)
    llm.generate(PROMPT, config)  # warm-up: load, caches
    rates, counts = [], []
    for _ in range(runs):
        done = llm.generate(PROMPT, config)
        counts.append(done.completion_tokens)
        rates.append(done.completion_tokens / done.seconds)
    return statistics.median(rates), int(statistics.median(counts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", help="http://HOST:PORT/v1 serving the embedded model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engine", default="torch", help="in-process engine: torch or ctranslate2")
    args = parser.parse_args()
    rows = [(f"in-process ({args.engine})", *tokens_per_second(load_llm("default", engine=args.engine), args.tokens,
                                                                args.runs))]
    if args.server:
        rows.append((f"server {args.server}", *tokens_per_second(load_llm(args.server), args.tokens, args.runs)))
    for name, rate, count in rows:
        print(f"{name:40s} {rate:7.1f} tokens/s  ({count} tokens per reply, median of {args.runs})")


if __name__ == "__main__":
    main()
