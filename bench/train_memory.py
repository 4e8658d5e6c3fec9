"""DPO training memory and speed: the full-logits path beside chunked log-probs.

    .venv/bin/python bench/train_memory.py [--steps 3] [--max-length 1024] [--batch-size 2]

Every variant trains DPO on the embedded SmolLM2-135M (full fine-tuning, AdamW, the trainer's
defaults otherwise) for --steps optimizer steps of --batch-size pairs (2 pairs = 4 sequences
per forward), each in its own Python process so that peaks do not mix:

  full logits      logprob_chunk=None: the whole tail projected at once (the path before)
  chunked          chunked log-probs, decoder activations kept
  chunked + ckpt   chunked log-probs and gradient checkpointing of the decoder layers (defaults)

Peak RSS is the child's VmHWM (model load, reference pass and training together).
Tokens/s is `TrainResult.tokens_per_second`: tokens forwarded in training steps over their
time (model load and the reference pass excluded).

The pairs are synthetic but made of real token ids: transcripts cut from the embedded
tokenizer's ids of this repository's README, a 300-token prompt then generated (trainable)
and observation (masked) segments in turn, as agent trajectories are; chosen has --max-length
tokens, rejected 1/8 fewer, so batches carry padding as real ones do.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS = {
    "full logits": {"logprob_chunk": None, "gradient_checkpointing": False},
    "chunked": {"logprob_chunk": 512, "gradient_checkpointing": False},
    "chunked + ckpt": {"logprob_chunk": 512, "gradient_checkpointing": True},
}
PROMPT_TOKENS = 300
GENERATED_TOKENS = 120  # per agent step
OBSERVATION_TOKENS = 80


def corpus_ids(tokenizer) -> list[int]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def transcript(ids: list[int], offset: int, length: int):
    """A trajectory of `length` ids read cyclically from `ids` at `offset`: prompt, then
    generated and observation segments in turn until the length is reached."""
    from rankact.agent.trajectory import ModelRef, Segment, Trajectory

    def take(n: int) -> list[int]:
        nonlocal offset
        out = [ids[(offset + i) % len(ids)] for i in range(n)]
        offset += n
        return out

    segments = [Segment(role="prompt", text="p", token_ids=take(PROMPT_TOKENS))]
    used, turn = PROMPT_TOKENS, 0
    while used < length:
        role, size = ("generated", GENERATED_TOKENS) if turn % 2 == 0 else ("observation", OBSERVATION_TOKENS)
        size = min(size, length - used)
        segments.append(Segment(role=role, text=role[0], token_ids=take(size)))
        used, turn = used + size, turn + 1
    return Trajectory(question="q", model=ModelRef(backend="bench", name="bench"), prompt_version="bench",
                      segments=segments)


def synthetic_pairs(n: int, length: int):
    from rankact.alignment.feedback.preferences.pairs import PreferencePair
    from rankact.alignment.training.policy import load_tokenizer

    ids = corpus_ids(load_tokenizer(None))
    stride = len(ids) // (2 * n + 1)
    # Rejected 1/8 shorter: pairs differ in length, so batches are padded (and attention masked) as in real data.
    return [PreferencePair(question_id=f"q{i}", question="q", chosen=transcript(ids, (2 * i) * stride, length),
                           rejected=transcript(ids, (2 * i + 1) * stride, length - length // 8)) for i in range(n)]


def peak_rss_gb() -> float:
    """This process's high-water mark of resident memory (VmHWM), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(settings: dict) -> None:
    """One variant: train, then print one JSON line with the figures."""
    from rankact.alignment.training.dpo import DPOConfig, train_dpo

    pairs = synthetic_pairs(settings["steps"] * settings["batch_size"], settings["max_length"])
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(out_dir=Path(out), max_length=settings["max_length"], batch_size=settings["batch_size"],
                           max_steps=settings["steps"], show_progress=False, save_every=10_000,
                           **VARIANTS[settings["variant"]])
        result = train_dpo(config, pairs=pairs)
    print(json.dumps({"peak_gb": peak_rss_gb(), "tokens_per_s": result.tokens_per_second,
                      "seconds": result.seconds, "steps": result.steps,
                      "loss": result.final_metrics.get("loss")}))


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    settings = {"variant": variant, "steps": args.steps, "max_length": args.max_length, "batch_size": args.batch_size}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(settings)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=2, help="pairs per optimizer step")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    print(f"DPO, embedded model, full fine-tuning: {args.batch_size} pairs/step "
          f"({2 * args.batch_size} sequences of {args.max_length} tokens), {args.steps} steps")
    print(f"{'variant':<16} {'peak RSS':>9} {'tokens/s':>9} {'s/step':>7} {'loss':>7}")
    for variant in args.variants:
        r = run_variant(variant, args)
        print(f"{variant:<16} {r['peak_gb']:>7.2f} GB {r['tokens_per_s']:>9.1f} {r['seconds'] / r['steps']:>7.1f} "
              f"{r['loss']:>7.4f}", flush=True)


if __name__ == "__main__":
    main()
