"""Speed of the local backend on the embedded SmolLM2-135M, beside plain transformers.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_speed.py [--tokens 64] [--skip-cold]

Prints:
  * first load (GGUF -> cached folder, in a fresh temporary RANKACT_CACHE) and second load
    of TransformersLLM("default"), each in a fresh process: constructor time and whole
    process time (python start + imports + load);
  * greedy tokens/s of TransformersLLM.generate beside model.generate, same prompt, same run;
  * sample(n=4) batched tokens/s beside 4 sequential generate calls;
  * agent-style calls (each prompt extends the previous) with the prefix KV cache on and off.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

LOAD_SNIPPET = """
import time
t0 = time.perf_counter()
from rankact.agent.llm.local import TransformersLLM
t1 = time.perf_counter()
TransformersLLM("default")
print(f"{t1 - t0:.3f} {time.perf_counter() - t1:.3f}")
"""

PROMPT = "Write a long story about a dragon who learns to cook."


def timed_load(cache: str | None) -> tuple[float, float, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if cache:
        env["RANKACT_CACHE"] = cache
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True,
                         check=True)
    wall = time.perf_counter() - start
    imports, ctor = map(float, out.stdout.split()[-2:])
    return imports, ctor, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--skip-cold", action="store_true", help="skip the ~20 s GGUF conversion")
    args = parser.parse_args()

    print("== load of the default model (fresh process each) ==")
    with tempfile.TemporaryDirectory() as cache:
        runs = [("first (cold cache)", cache), ("second (cache hit)", cache)] if not args.skip_cold \
            else [("second (user cache)", None)]
        for label, folder in runs:
            imports, ctor, wall = timed_load(folder)
            print(f"{label:22s} TransformersLLM('default'): {ctor:6.2f} s  "
                  f"(+ backend import {imports:.2f} s; whole process {wall:.2f} s)")

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from rankact.agent.llm import GenerationConfig, as_messages
    from rankact.agent.llm.local import TransformersLLM

    llm = TransformersLLM("default")
    messages = as_messages(PROMPT)
    ids = llm.encode(llm.render_prompt(messages))
    n_tok = args.tokens
    greedy = GenerationConfig(max_new_tokens=n_tok)
    llm.continue_ids(ids, GenerationConfig(max_new_tokens=4))  # warm-up

    print(f"\n== greedy decoding, {n_tok} new tokens, prompt {len(ids)} tokens, "
          f"{torch.get_num_threads()} threads ==")
    ours = llm.continue_ids(ids, greedy)
    print(f"rankact generate      {ours.completion_tokens / ours.seconds:7.1f} tok/s "
          f"({ours.completion_tokens} tokens in {ours.seconds:.2f} s)")
    with torch.inference_mode():
        start = time.perf_counter()
        ref = llm.model.generate(torch.tensor([ids]), max_new_tokens=n_tok, do_sample=False,
                                 pad_token_id=llm.pad_id)
        secs = time.perf_counter() - start
    ref_n = ref.shape[1] - len(ids)
    print(f"model.generate        {ref_n / secs:7.1f} tok/s ({ref_n} tokens in {secs:.2f} s)")
    same = ours.token_ids == ref[0, len(ids): len(ids) + len(ours.token_ids)].tolist()
    print(f"same tokens as model.generate: {same}")

    print(f"\n== sampling 4 completions, {n_tok} new tokens, temperature 0.8 ==")
    cfg = GenerationConfig(max_new_tokens=n_tok, temperature=0.8, seed=0)
    start = time.perf_counter()
    batch = llm.sample(messages, cfg, 4)
    b_secs = time.perf_counter() - start
    b_tok = sum(c.completion_tokens for c in batch)
    start = time.perf_counter()
    seq = [llm.generate(messages, cfg.model_copy(update={"seed": i})) for i in range(4)]
    s_secs = time.perf_counter() - start
    s_tok = sum(c.completion_tokens for c in seq)
    print(f"sample(n=4) batched   {b_tok / b_secs:7.1f} tok/s ({b_tok} tokens in {b_secs:.2f} s)")
    print(f"4 sequential calls    {s_tok / s_secs:7.1f} tok/s ({s_tok} tokens in {s_secs:.2f} s)")
    print(f"row 0 identical in both: {batch[0].token_ids == seq[0].token_ids}")

    print("\n== agent-style calls: each prompt extends the last (4 steps, 16 new tokens each) ==")
    system = "You answer questions using tools. " * 40  # ~300-token prompt, like the ReAct preamble
    base = llm.encode(llm.render_prompt(as_messages([{"role": "system", "content": system},
                                                     {"role": "user", "content": PROMPT}])))
    step_cfg = GenerationConfig(max_new_tokens=16, stop=["Observation:"])
    for label, enabled in (("prefix KV cache on ", True), ("prefix KV cache off", False)):
        llm.prefix_cache = enabled
        llm.clear_cache()
        ids, start = list(base), time.perf_counter()
        for step in range(4):
            done = llm.continue_ids(ids, step_cfg)
            ids = ids + done.token_ids + llm.encode(f"\nObservation: result {step}\n")
        print(f"{label}   {time.perf_counter() - start:6.2f} s for 4 calls (final prompt {len(ids)} tokens)")
    llm.prefix_cache = True


if __name__ == "__main__":
    main()
