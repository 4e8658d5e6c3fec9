"""DPO from rankings (Rafailov et al. 2023), TRL style: `DPOConfig` beside `train_dpo`.

loss = -log σ(β[(log π(c) - log ref(c)) - (log π(r) - log ref(r))]), where each log π is the
sum over the trajectory's trainable tokens only (generated, not forced): the model is never
pushed toward or away from tool observations or prompt text it did not write.

The reference is the starting policy. Its log-probs are computed once, before the first
update (the policy *is* the reference then, so no second model is loaded), cached in memory
and saved to `reference_logps.pt` in the output folder, so resume never recomputes them.

Call from Python: `train_dpo(DPOConfig(out_dir=..., pairs=...))` or pass `pairs=[...]`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from agent.errors import RankactError
from alignment.feedback.pairs import PreferencePair, TextPair, load_pair_source
from alignment.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from alignment.training.config import OfflineTrainConfig
from alignment.training.logprobs import policy_logprobs
from alignment.training.losses import LossType, dpo_loss
from alignment.training.policy import is_peft, load_policy, resolve_base, save_policy
from alignment.training.runtime import (
    Budget,
    MetricsLog,
    local_share,
    make_accelerator,
    plot_metrics,
    progress,
    seed_everything,
    step_indices,
)
from alignment.training.tokenize import Encoded, collate, encode_pair, pad_token_id

log = logging.getLogger(__name__)
REFERENCE_FILE = "reference_logps.pt"


class DPOConfig(OfflineTrainConfig):
    beta: float = Field(0.1, gt=0)
    loss_type: LossType = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)

    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)


class TrainResult(BaseModel):
    out_dir: Path
    steps: int
    stopped_early: bool  # budget or max_steps ended it before the planned epochs
    final_metrics: dict[str, float] = Field(default_factory=dict)


# --------------------------------------------------------------------------- data


def encode_pairs(pairs, tokenizer, max_length: int) -> list[tuple[Encoded, Encoded]]:
    encoded = [encode_pair(p, tokenizer, max_length) for p in pairs]
    kept = [e for e in encoded if e[0].n_trainable and e[1].n_trainable]
    if len(kept) < len(encoded):
        log.warning("skipped %d pairs with no generated tokens on one side", len(encoded) - len(kept))
    if not kept:
        raise RankactError("no usable pairs: every pair lacks generated tokens on one side")
    return kept


def _fingerprint(encoded, base: Path, max_length: int) -> str:
    digest = hashlib.sha256(f"{base}|{max_length}".encode())
    for chosen, rejected in encoded:
        digest.update(json.dumps([chosen.input_ids, chosen.trainable, rejected.input_ids, rejected.trainable]).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- log-probs


def pair_logps(model, encoded, indices, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed trainable-token log-probs of chosen and rejected for `indices`, one forward
    pass over both halves (DDP needs exactly one forward per backward)."""
    samples = [encoded[i][0] for i in indices] + [encoded[i][1] for i in indices]
    batch = collate(samples, pad_id).to(device)
    sums = policy_logprobs(model, batch.input_ids, batch.attention_mask, batch.trainable_mask).sum(-1)
    n = len(indices)
    return sums[:n], sums[n:]


@torch.no_grad()
def reference_logps(model, encoded, pad_id: int, accelerator, batch_size: int = 2) -> torch.Tensor:
    """[N, 2] reference log-probs; each process scores its share, then all gather the lot."""
    model.eval()
    mine = list(range(accelerator.process_index, len(encoded), accelerator.num_processes))
    results: list[tuple[int, float, float]] = []
    bar = progress(len(mine), "reference log-probs", accelerator.is_main_process)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        chosen, rejected = pair_logps(model, encoded, chunk, pad_id, accelerator.device)
        results.extend(zip(chunk, chosen.tolist(), rejected.tolist(), strict=True))
        bar.update(len(chunk))
    bar.close()
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        results = gather_object(results)
    table = torch.zeros(len(encoded), 2)
    for index, chosen, rejected in results:
        table[index] = torch.tensor([chosen, rejected])
    model.train()
    return table


def load_or_compute_reference(config: DPOConfig, model, encoded, pad_id, accelerator, fingerprint, resuming):
    path = config.out_dir / REFERENCE_FILE
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == fingerprint:
            return saved["logps"]
        log.warning("%s was computed for other pairs or another model; recomputing", path)
    if is_peft(model):
        with model.disable_adapter():  # adapters off = the base model = the reference
            table = reference_logps(model, encoded, pad_id, accelerator)
    elif resuming:  # trained weights are loaded already: score with a fresh copy of the base
        reference, _ = load_policy(config.base)
        table = reference_logps(reference.to(accelerator.device), encoded, pad_id, accelerator)
        del reference
    else:
        table = reference_logps(model, encoded, pad_id, accelerator)
    if accelerator.is_main_process:
        torch.save({"fingerprint": fingerprint, "logps": table}, path)
    return table


# --------------------------------------------------------------------------- training


def train_dpo(config: DPOConfig, pairs: list[PreferencePair | TextPair] | None = None, accelerator=None) -> TrainResult:
    accelerator = accelerator or make_accelerator()
    seed_everything(config.seed)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    resuming = config.resume and has_checkpoint(out)
    if config.resume and not resuming:
        log.warning("--resume: no checkpoint in %s, starting fresh", out)

    pairs = pairs if pairs is not None else load_pair_source(config.pairs, config.db)
    model, tokenizer = load_policy(config.base, config.lora)
    encoded = encode_pairs(pairs, tokenizer, config.max_length)
    pad_id = pad_token_id(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    state = {"step": 0}
    if resuming:
        state, _ = load_checkpoint(out, model, optimizer)
    model.to(accelerator.device)
    fingerprint = _fingerprint(encoded, resolve_base(config.base), config.max_length)
    ref = load_or_compute_reference(config, model, encoded, pad_id, accelerator, fingerprint, resuming)
    model.train()
    model, optimizer = accelerator.prepare(model, optimizer)

    planned = config.epochs * math.ceil(len(encoded) / config.batch_size)
    total = min(planned, config.max_steps) if config.max_steps else planned
    budget = Budget(config.max_minutes)
    metrics = MetricsLog(out / "metrics.jsonl", enabled=accelerator.is_main_process)
    bar = progress(total, "DPO", config.show_progress and accelerator.is_main_process, initial=state["step"])
    step, last = state["step"], {}
    while step < total and not budget.exceeded():
        indices = local_share(
            step_indices(step, len(encoded), config.batch_size, config.seed),
            accelerator.process_index,
            accelerator.num_processes,
        )
        chosen, rejected = pair_logps(model, encoded, indices, pad_id, accelerator.device)
        ref_pair = ref[indices].to(accelerator.device)
        losses, chosen_r, rejected_r = dpo_loss(
            chosen, rejected, ref_pair[:, 0], ref_pair[:, 1], config.beta, config.loss_type, config.label_smoothing
        )
        loss = losses.mean()
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        stats = torch.stack(
            [loss.detach(), (chosen_r > rejected_r).float().mean(), (chosen_r - rejected_r).mean(),
             chosen_r.mean(), rejected_r.mean(), torch.as_tensor(float(grad_norm), device=loss.device)]
        )
        stats = accelerator.reduce(stats, "mean").tolist()
        last = dict(zip(["loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "grad_norm"], stats,
                        strict=True))
        metrics.write({"step": step, **last, "seconds": round(budget.elapsed(), 2)})
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['accuracy']:.2f}")
        if step % config.save_every == 0 and step < total:
            _save(accelerator, model, optimizer, out, step)
    bar.close()
    _save(accelerator, model, optimizer, out, step)
    _finish(accelerator, model, tokenizer, config, step)
    return TrainResult(out_dir=out, steps=step, stopped_early=step < planned, final_metrics=last)


def _save(accelerator, model, optimizer, out: Path, step: int) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(out, accelerator.unwrap_model(model), optimizer, {"step": step})


def _finish(accelerator, model, tokenizer, config: DPOConfig, step: int) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_policy(
            accelerator.unwrap_model(model), tokenizer, config.out_dir,
            {"trainer": "dpo", "steps": step, "config": config.model_dump(mode="json")},
        )
        records = MetricsLog(config.out_dir / "metrics.jsonl").read()
        plot_metrics(records, ["loss", "accuracy", "margin", "chosen_reward", "rejected_reward"],
                     config.out_dir / "metrics.png", "step")
    accelerator.wait_for_everyone()
