"""Bradley-Terry reward-model training with accelerate (one or several processes).

Read top to bottom: build the model, tokenize and group the pairs, then one optimizer step
at a time: `grad_accum` micro-batches per process, each a batch of whole groups. The batch
order is a pure function of (seed, epoch), so a checkpoint only needs the step number to
know its data position, and a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from agent.errors import RankactError
from alignment.feedback.pairs import PreferencePair, TextPair
from alignment.training.losses import bradley_terry_loss
from alignment.training.reward.batching import (
    TokenizedPair,
    collate_pairs,
    group_pairs,
    make_batches,
    tokenize_pairs,
)
from alignment.training.reward.config import RewardTrainConfig
from alignment.training.reward.model import RewardModel
from alignment.training.tokenize import TruncationStats, collate, encode_prompt_completion

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainResult:
    steps: int
    stopped_early: bool
    seconds: float
    tokens: int
    pairs: int
    groups: int
    truncation: TruncationStats
    final_loss: float
    running_accuracy: float
    history: list[dict] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable_state(model: RewardModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(folder: Path, model: RewardModel, optimizer, scheduler, step: int, extra: dict) -> None:
    """Weights of the trainable parameters, optimizer, scheduler, RNG states and the step
    (which fixes the data position). Written to a temp folder, then renamed: a crash mid-write
    leaves the previous checkpoint intact."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(_trainable_state(model), tmp / "trainable.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **extra}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_checkpoint(folder: Path, model: RewardModel, optimizer, scheduler) -> dict:
    trainable = torch.load(folder / "trainable.pt", map_location="cpu")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in trainable]
    if missing:
        raise RankactError(f"checkpoint {folder} does not match this model (missing {missing[0]}, ...)")
    model.load_state_dict(trainable, strict=False)
    optim = torch.load(folder / "optim.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    _set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
    return json.loads((folder / "state.json").read_text())


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"  # fp32 on CPU: bf16 autocast there is slow and lossy


def train_reward(
    config: RewardTrainConfig, pairs: Sequence[PreferencePair | TextPair], log=print
) -> tuple[RewardModel | None, TrainResult]:
    """Train and save to config.out; returns (the trained model, or None on non-main processes; result)."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config.mixed_precision), gradient_accumulation_steps=config.grad_accum,
        # Without a GPU, say so: then `accelerate launch --num_processes N` (or torchrun) gives
        # N CPU processes over gloo instead of N copies that each think they are alone.
        cpu=not torch.cuda.is_available(),
    )
    main = accelerator.is_main_process
    say = log if main else (lambda *_: None)
    _seed_everything(config.seed)  # the head's init depends on it
    model = RewardModel.from_base(
        config.base,
        max_length=config.max_length,
        lora=config.lora,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_targets=config.lora_targets,
        head_init_std=config.head_init_std,
    )
    tokenized, truncation = tokenize_pairs(pairs, model.tokenizer, config.max_length)
    groups = group_pairs(tokenized)
    n_batches = len(make_batches(groups, config.batch_size, config.seed, 0))
    procs = accelerator.num_processes
    per_step = procs * config.grad_accum  # micro-batches consumed per optimizer step, all processes
    max_steps = config.max_steps or max(1, int(config.epochs * n_batches / per_step))
    say(f"{len(tokenized)} pairs in {len(groups)} groups, {n_batches} batches, {procs} process(es), "
        f"{max_steps} steps; truncation: {truncation.describe()}")
    if n_batches < procs:
        raise RankactError(f"{n_batches} batches cannot feed {procs} processes: use fewer processes or more data")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(
        config.scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=max_steps
    )

    out = Path(config.out)
    ckpt = out / CHECKPOINT_DIR
    # What fixes the data position and the schedule: a checkpoint only resumes the same run.
    # (N processes x grad_accum 1 and 1 process x grad_accum N consume the same batches per step.)
    run_key = {"max_steps": max_steps, "pairs": len(tokenized), "batches": n_batches,
               "micro_batches_per_step": per_step, "batch_size": config.batch_size, "seed": config.seed}
    start = 0
    if config.resume and (ckpt / "state.json").is_file():
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
        start = state["step"]
        changed = {k: (state.get(k), v) for k, v in run_key.items() if state.get(k) != v}
        if changed:
            raise RankactError(f"{ckpt} was made by a different run (checkpoint vs now: {changed}); "
                               "resume with the same data and settings, or use a new --out")
        say(f"resumed from {ckpt} at step {start}/{max_steps}")
    elif config.resume:
        say(f"no checkpoint in {ckpt}; starting from scratch")

    # The scheduler stays unwrapped: accelerate would step it once per process per step.
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    epoch_cache: dict[int, list[list[int]]] = {}

    def batch_at(index: int) -> list[int]:
        epoch, position = divmod(index, n_batches)  # the index-th micro-batch of the whole run
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = make_batches(groups, config.batch_size, config.seed, epoch)
        return epoch_cache[epoch][position]

    result = TrainResult(
        steps=start, stopped_early=False, seconds=0.0, tokens=0, pairs=len(tokenized), groups=len(groups),
        truncation=truncation, final_loss=float("nan"), running_accuracy=float("nan"),
    )
    t0 = time.monotonic()
    correct = seen = 0
    wrapped.train()
    progress = _progress(config.progress and main, start, max_steps)
    for step in range(start, max_steps):
        step_loss = 0.0
        for k in range(config.grad_accum):
            index = step * per_step + k * procs + accelerator.process_index
            batch = collate_pairs(tokenized, batch_at(index))
            with accelerator.accumulate(wrapped):
                loss, chosen, rejected = _forward(wrapped, batch, model.pad_id, accelerator.device, config)
                accelerator.backward(loss)  # scaled by 1/grad_accum by accelerate
                if accelerator.sync_gradients:  # last micro-batch of the step
                    if config.max_grad_norm:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
            step_loss += loss.item() / config.grad_accum
            correct += int((chosen > rejected).sum().item())
            seen += chosen.numel()
            result.tokens += batch.tokens
        result.steps = step + 1
        result.final_loss = step_loss
        result.running_accuracy = correct / max(seen, 1)
        result.history.append({"step": step + 1, "loss": step_loss, "lr": scheduler.get_last_lr()[0]})
        progress.update(step_loss, result.running_accuracy)
        done = step + 1 == max_steps
        over_budget = False
        if config.max_minutes is not None:  # all processes must agree, or one waits forever for the others
            late = torch.tensor(int(time.monotonic() - t0 > config.max_minutes * 60), device=accelerator.device)
            over_budget = bool(accelerator.reduce(late, "max").item())
        interrupted = config.stop_after is not None and step + 1 >= config.stop_after and not done
        if (step + 1) % config.save_every == 0 or over_budget or interrupted:
            accelerator.wait_for_everyone()
            if main:
                save_checkpoint(ckpt, model, optimizer.optimizer, scheduler, step + 1, run_key)
        if (over_budget or interrupted) and not done:
            result.stopped_early = True
            say(f"stopped at step {step + 1}/{max_steps} ({'time budget' if over_budget else 'stop_after'}); "
                "rerun with --resume to continue")
            break
    progress.close()
    # Tokens and accuracy over all processes (each counted its own micro-batches).
    totals = accelerator.reduce(torch.tensor([result.tokens, correct, seen], device=accelerator.device), "sum")
    result.tokens, correct, seen = (int(v) for v in totals.tolist())
    result.running_accuracy = correct / max(seen, 1)
    result.seconds = time.monotonic() - t0
    accelerator.wait_for_everyone()
    if not main:
        return None, result
    model = accelerator.unwrap_model(wrapped)
    # Stats even when stopped early: the saved model is usable as it is (PPO whitens with them).
    reference = _reference_sequences(tokenized, config.norm_samples, config.seed)
    model.set_normalization(model.score_ids(reference, batch_size=config.batch_size))
    say(f"normalization on {len(reference)} training responses: mean {model.info.mean:.4f} "
        f"std {model.info.std:.4f}")
    model.save(out)
    (out / "train_log.json").write_text(json.dumps({
        "steps": result.steps, "stopped_early": result.stopped_early, "seconds": result.seconds,
        "tokens": result.tokens, "pairs": result.pairs, "groups": result.groups,
        "truncation": vars(truncation), "config": json.loads(config.model_dump_json()), "history": result.history,
    }, indent=1))
    return model, result


def _forward(wrapped, batch, pad_id: int, device, config: RewardTrainConfig):
    # Sequences are already encoded (and truncated) by `tokenize_pairs`: only padding is left.
    padded = collate([encode_prompt_completion([], s) for s in batch.sequences], pad_id)
    scores = wrapped(padded.input_ids.to(device), padded.attention_mask.to(device)).float()
    chosen = scores[torch.tensor(batch.chosen_rows, device=device)]
    rejected = scores[torch.tensor(batch.rejected_rows, device=device)]
    weights = torch.tensor(batch.weights, device=device)
    loss = bradley_terry_loss(chosen, rejected, config.margin, config.center_coef, weights)
    return loss, chosen.detach(), rejected.detach()


def _reference_sequences(pairs: Sequence[TokenizedPair], n: int, seed: int) -> list[list[int]]:
    """Up to n distinct training sequences (chosen and rejected), sampled with the seed."""
    unique = list(dict.fromkeys(tuple(s) for p in pairs for s in (p.chosen, p.rejected)))
    random.Random(seed).shuffle(unique)
    return [list(s) for s in unique[:n]]


class _progress:
    """tqdm bar showing loss and running accuracy (a no-op when disabled)."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="reward", unit="step", dynamic_ncols=True)

    def update(self, loss: float, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.3f}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["TrainResult", "load_checkpoint", "save_checkpoint", "train_reward"]
