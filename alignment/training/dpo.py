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

import logging
from typing import ClassVar

import torch
from pydantic import Field

from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.pair_source import load_pair_source
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.config import OfflineTrainConfig
from rankact.alignment.training.logprobs import DEFAULT_CHUNK_SIZE, token_logprobs
from rankact.alignment.training.losses import LossType, dpo_loss
from rankact.alignment.training.monitors import drift_probe
from rankact.alignment.training.policy import load_trainable, resolve_base, save_policy
from rankact.alignment.training.reference import cached_reference, fingerprint
from rankact.alignment.training.replay import ReplayTerm
from rankact.alignment.training.runtime import (
    TrainingRun,
    TrainResult,
    local_share,
    planned_steps,
    progress,
    step_indices,
)
from rankact.alignment.training.tokenize import Encoded, collate, encode_pair, pad_token_id, require_exact_ids

log = logging.getLogger(__name__)
REFERENCE_FILE = "reference_logps.pt"


class DPOConfig(OfflineTrainConfig):
    beta: float = Field(0.1, gt=0, description="strength of the pull to the reference")
    loss_type: LossType = Field("sigmoid", description="sigmoid (DPO) or ipo")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: assumed label-flip rate")

    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)


def encode_pairs(pairs, tokenizer, max_length: int) -> list[tuple[Encoded, Encoded]]:
    """Both sides of every pair. A step an annotator flagged in the chosen trajectory is left out
    of its log-ratio: DPO raises the chosen side, and a flagged step must never be raised (the
    rejected side keeps its flagged steps: lowering them is right)."""
    from rankact.alignment.training.sft import without_steps

    encoded = []
    for pair in pairs:
        chosen, rejected = encode_pair(pair, tokenizer, max_length)
        if isinstance(pair, PreferencePair) and pair.chosen_flagged_steps:
            chosen = without_steps(chosen, set(pair.chosen_flagged_steps))
        encoded.append((chosen, rejected))
    kept = [e for e in encoded if e[0].n_trainable and e[1].n_trainable]
    if len(kept) < len(encoded):
        log.warning("skipped %d pairs with no generated tokens on one side", len(encoded) - len(kept))
    if not kept:
        raise NoTrainingSignal("no usable pairs: every pair lacks generated tokens on one side")
    return kept


# --------------------------------------------------------------------------- log-probs


def pair_logps(model, encoded, indices, pad_id: int, device,
               chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed trainable-token log-probs of chosen and rejected for `indices`, one forward
    pass over both halves (DDP needs exactly one forward per backward)."""
    samples = [encoded[i][0] for i in indices] + [encoded[i][1] for i in indices]
    batch = collate(samples, pad_id).to(device)
    logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.trainable_mask,
                             chunk_size=chunk_size)
    sums = logp.sum(-1)
    n = len(indices)
    return sums[:n], sums[n:]


@torch.no_grad()
def reference_logps(model, encoded, pad_id: int, accelerator, batch_size: int = 2,
                    chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """[N, 2] reference log-probs; each process scores its share, then all gather the lot."""
    model.eval()
    mine = list(range(accelerator.process_index, len(encoded), accelerator.num_processes))
    results: list[tuple[int, float, float]] = []
    bar = progress(len(mine), "reference log-probs", accelerator.is_main_process)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        chosen, rejected = pair_logps(model, encoded, chunk, pad_id, accelerator.device, chunk_size)
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


# --------------------------------------------------------------------------- training


def train_dpo(config: DPOConfig, pairs: list[PreferencePair | TextPair] | None = None, accelerator=None) -> TrainResult:
    run = TrainingRun(config, "DPO", accelerator=accelerator)
    pairs = pairs if pairs is not None else load_pair_source(config.pairs, config.db)
    require_exact_ids((t for p in pairs if isinstance(p, PreferencePair) for t in (p.chosen, p.rejected)),
                      config.retokenize)
    replay = ReplayTerm.load(config, config.max_length, config.seed)  # a bad file fails before the model loads
    model, tokenizer, params, optimizer = load_trainable(config)
    encoded = encode_pairs(pairs, tokenizer, config.max_length)
    pad_id = pad_token_id(tokenizer)
    planned, total = planned_steps(len(encoded), config.batch_size, config.epochs, config.max_steps)
    digest = fingerprint(resolve_base(config.base), config.max_length,
                         ([c.input_ids, c.trainable, r.input_ids, r.trainable] for c, r in encoded))
    run_key = {"pairs": digest[:16], "batch_size": config.batch_size, "seed": config.seed,
               "replay": len(replay.samples) if replay else 0}
    state = run.resume(model, optimizer, run_key)
    model.to(run.device)
    ref = cached_reference(
        config.out_dir / REFERENCE_FILE, digest, model, config.base, bool(state), run.device,
        lambda m: reference_logps(m, encoded, pad_id, run.accelerator, chunk_size=config.logprob_chunk),
        run.is_main)
    probe = drift_probe(config, [c for c, _ in encoded], model, pad_id, run, bool(state))
    model.train()
    model, optimizer = run.accelerator.prepare(model, optimizer)

    run.start(total, initial=state.get("step", 0))
    step, last, tokens = state.get("step", 0), {}, 0
    while step < total and not run.over_budget():
        indices = local_share(step_indices(step, len(encoded), config.batch_size, config.seed), run.rank, run.world)
        chosen, rejected = pair_logps(model, encoded, indices, pad_id, run.device, config.logprob_chunk)
        ref_pair = ref[indices].to(run.device)
        losses, chosen_r, rejected_r = dpo_loss(
            chosen, rejected, ref_pair[:, 0], ref_pair[:, 1], config.beta, config.loss_type, config.label_smoothing
        )
        loss = losses.mean()
        replayed = replay.loss(model, step, pad_id, run.device, config.logprob_chunk) if replay else torch.zeros(())
        grad_norm = run.update(loss + replayed, optimizer, params, config.max_grad_norm)
        step += 1
        tokens += sum(len(encoded[i][0]) + len(encoded[i][1]) for i in indices)
        stats = torch.stack([loss.detach(), (chosen_r > rejected_r).float().mean(), (chosen_r - rejected_r).mean(),
                             chosen_r.mean(), rejected_r.mean(), grad_norm, replayed.detach()])
        stats = run.accelerator.reduce(stats, "mean").tolist()
        last = dict(zip(["loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "grad_norm", "replay_loss"], stats,
                        strict=True))
        if not replay:
            del last["replay_loss"]
        last.update(probe.observe(step, step == total, run.accelerator.unwrap_model(model)))
        run.log({"step": step, **last}, loss=last["loss"], acc=last["accuracy"])
        if probe.stop:
            break
        if step % config.save_every == 0 and step < total:
            run.save(model, optimizer, {"step": step})
    run.save(model, optimizer, {"step": step})
    unwrapped = run.accelerator.unwrap_model(model)
    run.finish(["loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "kl", "entropy", "replay_loss"], save=lambda: save_policy(
        unwrapped, tokenizer, config.out_dir, {"trainer": "dpo", "steps": step, "config": config.model_dump(mode="json")}))
    return run.result(step, step < planned, last, tokens=tokens * run.world)
