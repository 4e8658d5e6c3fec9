"""Where rankact's reward trainer and TRL's RewardTrainer differ, measured on one batch.

bench/reward.py compares the two end to end (accuracy after a full epoch: a GPU job). This
script isolates the mechanics on CPU in minutes, paired on the same HH-RLHF pairs, token ids
and backbone weights:

  1. forward/loss/gradient parity: TRL's own model (AutoModelForSequenceClassification,
     loaded by RewardTrainer) and collator/`compute_loss`, against rankact's `RewardModel`
     and `_forward` with TRL's head copied in. Equal scores, loss and gradients mean that
     pooling, padding and loss reduction are not where the two differ.
  2. optimizer and learning-rate schedule: the ones `Trainer` builds vs rankact's, step by step.
  3. the score head's initialisation: TRL's actual head vs rankact's, the initial score
     spread and loss they give on these pairs, and how far Adam can move the head in a run
     (about the sum of the learning rates) relative to its initial size.

    HF_HUB_OFFLINE=1 python bench/reward_trl_parity.py          (needs trl; ~5 min on a busy 2-core CPU)
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf_harmless-base_test.jsonl.gz"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--rows", default="0:8", help="train rows forming the batch")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--steps", type=int, default=225, help="schedule length (bench/reward.py: one epoch = 225)")
    args = p.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, get_scheduler
    from trl import RewardConfig, RewardTrainer

    from rankact.alignment.feedback.preferences.pairs import read_pairs
    from rankact.alignment.training.policy import resolve_base
    from rankact.alignment.training.reward.batching import collate_pairs, tokenize_pairs
    from rankact.alignment.training.reward.config import RewardTrainConfig
    from rankact.alignment.training.reward.model import RewardModel
    from rankact.alignment.training.reward.train import _forward

    torch.manual_seed(0)
    base = resolve_base(None)
    tokenizer = AutoTokenizer.from_pretrained(base)
    pairs, _ = tokenize_pairs(read_pairs(args.data, args.rows), tokenizer, args.max_length)
    examples = [{"chosen_ids": q.chosen, "rejected_ids": q.rejected} for q in pairs]
    out = Path(tempfile.mkdtemp(prefix="rankact-trl-parity-"))
    trl_config = RewardConfig(
        output_dir=str(out), learning_rate=args.lr, max_steps=args.steps, lr_scheduler_type="linear",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, report_to="none", save_strategy="no", bf16=False,
        use_cpu=True, max_length=None, model_init_kwargs={"dtype": torch.float32}, gradient_checkpointing=False,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = RewardTrainer(model=str(base), args=trl_config, train_dataset=Dataset.from_list(examples),
                            processing_class=tokenizer)
    trl_model = trainer.model
    score = trl_model.score
    trl_std = score.weight.std().item()
    print(f"TRL head: {type(trl_model).__name__}.score = Linear({score.in_features}, {score.out_features}, "
          f"bias={score.bias is not None}); weight std {trl_std:.4f} (config.initializer_range "
          f"{trl_model.config.initializer_range}); pooling on input_ids != pad_token_id {trl_model.config.pad_token_id}")

    ours = RewardModel.from_base(None, max_length=args.max_length)
    ours_std_default = ours.head.weight.std().item()
    print(f"rankact head (default init): Linear(576, 1, bias={ours.head.bias is not None}); weight std "
          f"{ours_std_default:.4f}")
    same_backbone = torch.equal(ours.lm.get_decoder().embed_tokens.weight, trl_model.model.embed_tokens.weight)
    with torch.no_grad():  # parity of everything but the head's initial draw
        ours.head.weight.copy_(score.weight)
        ours.head.bias.zero_()

    # 1. forward, loss, gradients on the same batch
    captured = {}
    ours.head.register_forward_hook(lambda m, i, o: captured.__setitem__("h", i[0].detach()))
    trl_model.train()
    ours.train()
    batch = trainer.data_collator(examples)
    trl_loss = trainer.compute_loss(trl_model, dict(batch))
    trl_loss.backward()
    with torch.no_grad():
        trl_scores = trl_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    cfg = RewardTrainConfig(out_dir=out / "ours")
    our_batch = collate_pairs(pairs, list(range(len(pairs))))
    our_loss, chosen, rejected = _forward(ours, our_batch, ours.pad_id, torch.device("cpu"), cfg)
    our_loss.backward()
    our_scores = torch.cat([chosen, rejected])

    def grad_gap(a, b) -> float:
        return ((a.grad - b.grad).norm() / b.grad.norm()).item()

    print(f"\n1. same backbone weights: {same_backbone}; {len(pairs)} pairs, {batch['input_ids'].shape[1]} tokens max")
    print(f"   scores  max |ours - TRL| = {(our_scores - trl_scores).abs().max().item():.2e} "
          f"(scores span {trl_scores.min().item():+.3f} .. {trl_scores.max().item():+.3f})")
    print(f"   loss    ours {our_loss.item():.6f}  TRL {trl_loss.item():.6f}")
    print(f"   grad    head rel. gap {grad_gap(ours.head.weight, score.weight):.2e}; embed rel. gap "
          f"{grad_gap(ours.lm.get_decoder().embed_tokens.weight, trl_model.model.embed_tokens.weight):.2e}; "
          f"layer 0 q_proj {grad_gap(ours.lm.get_decoder().layers[0].self_attn.q_proj.weight, trl_model.model.layers[0].self_attn.q_proj.weight):.2e}; "
          f"bias grad {ours.head.bias.grad.abs().item():.1e} (the pairwise loss cannot move a bias)")

    # 2. optimizer and schedule
    trainer.create_optimizer_and_scheduler(num_training_steps=args.steps)
    opt = trainer.optimizer
    opt.zero_grad(set_to_none=True)  # so the steps below only advance the schedule
    groups = [(g["weight_decay"], len(g["params"])) for g in opt.param_groups]
    print(f"\n2. TRL optimizer {type(opt).__name__} defaults "
          f"{ {k: opt.defaults[k] for k in ('lr', 'betas', 'eps', 'weight_decay') if k in opt.defaults} }; "
          f"groups (weight_decay, n params) {groups}")
    dummy = torch.nn.Parameter(torch.zeros(1))
    our_opt = torch.optim.AdamW([dummy], lr=args.lr, weight_decay=cfg.weight_decay)
    print(f"   rankact optimizer AdamW defaults "
          f"{ {k: our_opt.defaults[k] for k in ('lr', 'betas', 'eps', 'weight_decay')} }")
    our_sched = get_scheduler(cfg.scheduler, our_opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=args.steps)
    trl_lrs, our_lrs = [], []
    for _ in range(args.steps):
        trl_lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        our_lrs.append(our_sched.get_last_lr()[0])
        opt.step()  # no gradients: a no-op that keeps the scheduler's order check quiet
        our_opt.step()
        trainer.lr_scheduler.step()
        our_sched.step()
    gap = max(abs(a - b) for a, b in zip(trl_lrs, our_lrs, strict=True))
    print(f"   lr at steps 0/1/{args.steps // 2}/{args.steps - 1}: TRL {[trl_lrs[i] for i in (0, 1, args.steps // 2, -1)]}"
          f" rankact {[our_lrs[i] for i in (0, 1, args.steps // 2, -1)]}; max gap {gap:.1e}")

    # 3. head initialisation: what the initial head does on these pairs, and how far it can move
    h = captured["h"].double()  # rows: our batch's unique sequences, as pooled at the last token
    idx_c, idx_r = torch.tensor(our_batch.chosen_rows), torch.tensor(our_batch.rejected_rows)
    delta = h[idx_c] - h[idx_r]
    print(f"\n3. pooled hidden state norm: mean {h.norm(dim=1).mean():.1f} (sqrt(hidden) = {math.sqrt(h.shape[1]):.1f}); "
          f"|h_chosen - h_rejected| mean {delta.norm(dim=1).mean():.1f}")
    lr_sum = sum(trl_lrs)
    gen = torch.Generator().manual_seed(0)
    for name, std in [("rankact 1/sqrt(hidden+1)", 1 / math.sqrt(h.shape[1] + 1)), ("TRL initializer_range", 0.02)]:
        w = torch.randn(2000, h.shape[1], generator=gen, dtype=torch.float64) * std
        scores = h @ w.T  # [sequences, draws]
        margins = delta @ w.T
        loss0 = torch.nn.functional.softplus(-margins).mean().item()
        print(f"   {name:26} std {std:.4f}: initial score std {scores.std(dim=0).mean():.2f}, "
              f"|margin| {margins.abs().mean():.2f}, initial loss {loss0:.3f} (ln 2 = 0.693); "
              f"Adam can move each head weight <= ~sum(lr) = {lr_sum:.1e} = {lr_sum / std:.0%} of its init std")


if __name__ == "__main__":
    main()
