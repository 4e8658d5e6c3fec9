"""Reward-model benchmark on Anthropic HH-RLHF (harmless-base): train on DEV rows, report
pairwise accuracy on TEST rows with a Wilson 95% interval, wall time and tokens/s; where TRL
installs, train TRL's RewardTrainer on the same backbone, the same token ids (same truncation)
and the same number of steps, and print both side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/reward.py --max-length 256 --batch-size 8 --lr 2e-5
    (defaults: train rows 0:1800, TEST rows 1800:2312, one epoch = 225 steps, full fine-tuning)

`--head-init-std 0.0417 0.02` trains one rankact run per head init; every run after the first (TRL's too)
is compared with the first on the same TEST pairs: accuracy difference with a paired-bootstrap 95% interval,
pairs gained/lost and an exact McNemar p.

An untrained head scores about 50%; the target is a TEST interval above 55%.

Measured 2026-11-26 (SmolLM2-135M-Instruct, the embedded GGUF dequantized; 512 TEST pairs), with the
head init of the time, 1/sqrt(hidden + 1) = 0.0417 (now `--head-init-std 0.0417`; the default is TRL's 0.02:
bench/reward_trl_parity.py finds the head's init the one training difference between the two trainers):
  one H200, bf16, the command above:   rankact 0.629 (0.586-0.670), 36 s, 16.8k tok/s;
                                       TRL RewardTrainer 0.668 (0.626-0.707), 21 s, 24.3k tok/s
  same with --max-length 512:          rankact 0.623 (0.580-0.664); TRL 0.672 (0.630-0.711)
  --lora --lr 1e-4:                    rankact 0.570 (0.527-0.613); TRL 0.635 (0.592-0.675)
  --lora --lr 1e-4 --head-init-std 0.02 (picked on DEV rows 1500:1800 by a rule fixed beforehand):
                                       rankact 0.621 (0.578-0.662)
  2 shared CPU cores (load ~9 from other jobs), --max-steps 10 --test-range 1800:1864 --no-trl:
                                       16 tok/s training; 10 steps are far too few (0.453 on 64 pairs):
                                       a full epoch needs a GPU or an idle machine (~140 tok/s: ~1 h).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf_harmless-base_test.jsonl.gz"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--base", default=None, help="backbone folder (default: embedded SmolLM2-135M)")
    p.add_argument("--train-range", default="0:1800", help="DEV rows to train on")
    p.add_argument("--test-range", default="1800:2312", help="TEST rows to report on")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="default: one epoch over the DEV rows")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--lora", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head-init-std", type=float, nargs="*", default=[],
                   help="one rankact run per value, the first the baseline of the paired comparisons "
                        "(default: one run at RewardTrainConfig's 0.02, TRL's; 0.0417 = the former 1/sqrt(hidden + 1))")
    p.add_argument("--no-trl", action="store_true", help="skip TRL's RewardTrainer")
    p.add_argument("--out", type=Path, default=None, help="where models go (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args()


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_ours(args, train_pairs, test_tok, out: Path, head_init_std: float | None) -> dict:
    from rankact.alignment.training.reward.config import RewardTrainConfig
    from rankact.alignment.training.reward.evaluate import summarize
    from rankact.alignment.training.reward.train import train_reward

    config = RewardTrainConfig(
        base=args.base, out_dir=out, lora=RewardTrainConfig.DEFAULT_LORA if args.lora else None,
        max_length=args.max_length, batch_size=args.batch_size, grad_accum=args.grad_accum, learning_rate=args.lr,
        max_steps=args.max_steps, seed=args.seed, save_every=10**9, norm_samples=64,
        **({"head_init_std": head_init_std} if head_init_std else {}),
    )
    t0 = time.monotonic()
    model, result = train_reward(config, train_pairs)
    train_wall = time.monotonic() - t0
    t1 = time.monotonic()  # as `evaluate_pairs`, keeping each pair's outcome for the paired comparison
    unique = list(dict.fromkeys(tuple(s) for p in test_tok for s in (p.chosen, p.rejected)))
    scores = dict(zip(unique, model.score_ids(unique, batch_size=16), strict=True))
    chosen, rejected = [scores[tuple(p.chosen)] for p in test_tok], [scores[tuple(p.rejected)] for p in test_tok]
    evaluation = summarize(chosen, rejected).model_copy(update={"seconds": time.monotonic() - t1})
    name = f"rankact head {config.head_init_std:g}" + (" (LoRA)" if args.lora else "")
    return {
        "name": name, "steps": result.steps, "train_wall_s": train_wall,
        "train_loop_s": result.seconds, "train_tokens": result.tokens, "tokens_per_s": result.tokens_per_second,
        "test": evaluation.model_dump(), "eval_s": evaluation.seconds,
        "truncation": result.notes["truncation"], "final_loss": result.final_metrics.get("loss"),
        "correct": [c > r for c, r in zip(chosen, rejected, strict=True)],
    }


def run_trl(args, train_tok, test_tok, steps: int, base: Path, out: Path) -> dict:
    """TRL's RewardTrainer on the same token ids (our truncation), backbone and steps."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rankact.alignment.training.reward.evaluate import summarize
    from rankact.alignment.training.tokenize import collate as pad_batch
    from rankact.alignment.training.tokenize import encode_prompt_completion, pad_token_id

    tokenizer = AutoTokenizer.from_pretrained(base)
    dataset = Dataset.from_list([{"chosen_ids": p.chosen, "rejected_ids": p.rejected} for p in train_tok])
    cuda = torch.cuda.is_available()
    config = RewardConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr, max_steps=steps, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, seed=args.seed, logging_steps=max(1, steps // 10), save_strategy="no", report_to="none",
        bf16=cuda, max_length=None, model_init_kwargs={"dtype": torch.float32}, use_cpu=not cuda,
        dataloader_num_workers=0, disable_tqdm=False, gradient_checkpointing=False,  # as ours: no recompute
    )
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                 task_type="SEQ_CLS")
    trainer = RewardTrainer(model=str(base), args=config, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    counted = {"tokens": 0}
    collate = trainer.data_collator

    def counting(examples):
        batch = collate(examples)
        counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    trainer.data_collator = counting
    t0 = time.monotonic()
    trainer.train()
    train_wall = time.monotonic() - t0

    model = trainer.model.eval()
    device = next(model.parameters()).device
    pad_id = pad_token_id(tokenizer)
    unique = sorted({tuple(s) for p in test_tok for s in (p.chosen, p.rejected)}, key=len)
    scores: dict[tuple, float] = {}
    t1 = time.monotonic()
    with torch.no_grad():
        for i in range(0, len(unique), 16):
            chunk = unique[i : i + 16]
            padded = pad_batch([encode_prompt_completion([], s) for s in chunk], pad_id)
            ids, mask = padded.input_ids, padded.attention_mask
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0]
            scores.update(zip(chunk, logits.float().cpu().tolist(), strict=True))
    chosen, rejected = [scores[tuple(p.chosen)] for p in test_tok], [scores[tuple(p.rejected)] for p in test_tok]
    evaluation = summarize(chosen, rejected)
    return {
        "name": "TRL RewardTrainer" + (" (LoRA)" if args.lora else ""), "steps": steps, "train_wall_s": train_wall,
        "train_loop_s": train_wall, "train_tokens": counted["tokens"],
        "tokens_per_s": counted["tokens"] / train_wall if train_wall else 0.0,
        "test": evaluation.model_dump(), "eval_s": time.monotonic() - t1,
        "correct": [c > r for c, r in zip(chosen, rejected, strict=True)],
    }


def main() -> None:
    args = parse_args()
    import torch
    import transformers

    from rankact.alignment.feedback.preferences.pairs import read_pairs
    from rankact.alignment.training.policy import resolve_base
    from rankact.alignment.training.reward.batching import group_pairs, make_batches, tokenize_pairs

    base = resolve_base(args.base)
    args.base = str(base)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"device {_device()} ({torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}), "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, transformers {transformers.__version__}")
    train_pairs = read_pairs(args.data, args.train_range)
    test_pairs = read_pairs(args.data, args.test_range)
    print(f"data {args.data.name}: train rows {args.train_range} ({len(train_pairs)} pairs), "
          f"test rows {args.test_range} ({len(test_pairs)} pairs)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    train_tok, _ = tokenize_pairs(train_pairs, tokenizer, args.max_length)
    test_tok, _ = tokenize_pairs(test_pairs, tokenizer, args.max_length)
    steps = args.max_steps or len(make_batches(group_pairs(train_tok), args.batch_size, args.seed, 0)) // args.grad_accum
    args.max_steps = steps
    print(f"backbone {base}; max_length {args.max_length}, batch {args.batch_size} x accum {args.grad_accum}, "
          f"{steps} steps, lr {args.lr}, {'LoRA' if args.lora else 'full fine-tuning'}, seed {args.seed}")

    work = args.out or Path(tempfile.mkdtemp(prefix="rankact-bench-reward-"))
    results = [run_ours(args, train_pairs, test_tok, work / f"rankact-{i}", std)
               for i, std in enumerate(args.head_init_std or [None])]
    if args.no_trl:
        print("TRL: skipped (--no-trl)")
    else:
        try:
            from trl import RewardTrainer  # noqa: F401  (imports datasets lazily; any failure = skip)
        except Exception as exc:  # noqa: BLE001
            print(f"TRL: skipped (not importable: {exc})")
        else:
            results.append(run_trl(args, train_tok, test_tok, steps, base, work / "trl"))

    print()
    print(f"{'trainer':24} {'steps':>5} {'train s':>8} {'tok/s':>7} {'TEST acc':>8} {'95% CI':>13} "
          f"{'margin':>7} {'eval s':>6}")
    for r in results:
        t = r["test"]
        print(f"{r['name']:24} {r['steps']:>5} {r['train_wall_s']:>8.0f} {r['tokens_per_s']:>7.0f} "
              f"{t['accuracy']:>8.3f} {t['ci_low']:>6.3f}-{t['ci_high']:.3f} {t['mean_margin']:>+7.3f} "
              f"{r['eval_s']:>6.0f}")
    print(f"TEST pairs: {results[0]['test']['pairs']}; target: 95% interval above 0.55 -> "
          + ", ".join(f"{r['name']}: {'met' if r['test']['ci_low'] > 0.55 else 'not met'}" for r in results))
    # Paired on the same TEST pairs: bootstrap interval of the accuracy difference, exact McNemar.
    from rankact.alignment.evaluation.significance import paired_difference

    for r in results[1:]:
        d = paired_difference("TEST accuracy", results[0]["name"], r["name"], results[0]["correct"], r["correct"],
                              binary=True)
        print(f"{d.other} - {d.baseline}: {d.difference:+.3f} (95% CI {d.low:+.3f} to {d.high:+.3f}), "
              f"{d.gained} pairs gained / {d.lost} lost, McNemar p = {d.p_value:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))


if __name__ == "__main__":
    main()
