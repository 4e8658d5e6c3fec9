"""Group-relative training straight from rankings (GRPO, Shao et al. 2024, on people's ranks).

Each question's K ranked trajectories form a group. Their places become scores (ties share
them), centred and scaled within the group: the advantage of a trajectory says how much better
than its siblings people found it. No reward model, no critic, and no pair flattening: a
ranking of K gives K advantages, not C(K,2) loosely coupled comparisons. The same trainer
takes a task's gold answers or a reward model as the group signal (`--signal`).

Loss per generated, non-forced token (observations, prompts and forced text get nothing):
the clipped surrogate -min(r·A, clip(r, 1±ε)·A) with r = π/π_old, plus β·KL(π‖ref) (k3),
averaged over the batch's trainable tokens. The trajectories were sampled before training, so
π_old is the starting policy; it is also the reference, so one table of per-token log-probs
(computed once, saved in the output folder) serves both. A step an annotator flagged gets a
negative advantage on its own tokens (`advantages.token_advantages`).

Monitors: KL to the reference and entropy every step; a warning when KL passes `kl_budget`
(and a stop, with `stop_on_kl_budget`).

Call from Python: `train_grpo(GRPOConfig(out_dir=..., db=...))` or pass `groups=[...]`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field

from rankact.agent.errors import RankactError
from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.groups import GroupSignal, RankedGroup
from rankact.alignment.training.advantages import group_advantages, token_advantages
from rankact.alignment.training.config import PolicyTrainConfig, ReplaySettings
from rankact.alignment.training.group_source import load_groups
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.losses import group_relative_loss
from rankact.alignment.training.masked import masked_mean
from rankact.alignment.training.monitors import KLBudget
from rankact.alignment.training.policy import load_trainable, resolve_base, save_policy
from rankact.alignment.training.reference import cached_reference, fingerprint, sample_token_logps
from rankact.alignment.training.replay import ReplayTerm
from rankact.alignment.training.runtime import (
    TrainingRun,
    TrainResult,
    local_share,
    planned_steps,
    step_indices,
)
from rankact.alignment.training.tokenize import (
    Encoded,
    collate,
    encode_trajectory,
    pad_token_id,
    require_exact_ids,
)

log = logging.getLogger(__name__)
REFERENCE_FILE = "reference_token_logps.pt"
PLOT_KEYS = ["loss", "kl", "entropy", "clipfrac", "mean_advantage_abs", "replay_loss"]


class GRPOConfig(PolicyTrainConfig, ReplaySettings):
    db: str | None = Field(None, description="trajectory store URL: its rankings (or questions) are the groups")
    signal: GroupSignal = Field("ranking", description="group signal: ranking (people's or simulated ranks), "
                                                       "task (gold answers), reward (a reward model)")
    reward_model: Path | None = Field(None, description="reward model folder, for --signal reward")
    scale_advantages: bool = Field(True, description="divide advantages by the group's standard deviation")
    flag_penalty: float = Field(1.0, ge=0, description="negative advantage on the tokens of a flagged step")
    clip_range: float = Field(0.2, gt=0, description="policy ratio clip ε")
    kl_coef: float = Field(0.04, ge=0, description="β of the KL(π‖ref) term in the loss")
    kl_budget: float | None = Field(0.5, gt=0, description="warn when the per-token KL to the reference passes this")
    stop_on_kl_budget: bool = Field(False, description="stop (and save) when the KL budget is passed")
    batch_size: int = Field(4, ge=1, description="trajectories per optimizer step, over all processes")
    epochs: int = Field(2, ge=1, description="passes over the groups")
    max_steps: int | None = Field(None, ge=1, description="stop after N optimizer steps")

    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)


def encode_groups(groups: list[RankedGroup], tokenizer, config: GRPOConfig) -> tuple[list[Encoded], list[list[float]]]:
    """Every trajectory that carries a signal, encoded, with its per-token advantages. A group
    whose scores all tie (and that has no flags) carries none and is left out."""
    samples, advantages = [], []
    for group in groups:
        group_adv = group_advantages(group.scores, scale=config.scale_advantages)
        for trajectory, advantage in zip(group.trajectories, group_adv, strict=True):
            flagged = set(group.flagged.get(trajectory.id, []))
            if advantage == 0.0 and not flagged:
                continue
            encoded = encode_trajectory(trajectory, tokenizer, config.max_length)
            if not encoded.n_trainable:
                continue
            samples.append(encoded)
            advantages.append(token_advantages(advantage, encoded.trainable, encoded.steps, flagged,
                                               config.flag_penalty))
    if not samples:
        raise NoTrainingSignal("no training signal: every group ties (and nothing is flagged), or no trajectory "
                           "has generated tokens; rank more trajectories, or collect K >= 2 that differ")
    return samples, advantages


def _pad_rows(rows: list[list[float]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row[:width])
    return out


def train_grpo(config: GRPOConfig, groups: list[RankedGroup] | None = None, accelerator=None) -> TrainResult:
    run = TrainingRun(config, "GRPO", accelerator=accelerator)
    if groups is None:
        if config.db is None:
            raise RankactError("give a trajectory store (--db) whose rankings or questions are the groups")
        groups = load_groups(config.db, config.signal,
                             reward_model=str(config.reward_model) if config.reward_model else None)
    require_exact_ids((t for g in groups for t in g.trajectories), config.retokenize)
    replay = ReplayTerm.load(config, config.max_length, config.seed)  # a bad file fails before the model loads
    model, tokenizer, params, optimizer = load_trainable(config)
    samples, advantages = encode_groups(groups, tokenizer, config)
    pad_id = pad_token_id(tokenizer)
    planned, total = planned_steps(len(samples), config.batch_size, config.epochs, config.max_steps)
    digest = fingerprint(resolve_base(config.base), config.max_length, ([s.input_ids, s.trainable] for s in samples))
    run_key = {"samples": digest[:16], "batch_size": config.batch_size, "seed": config.seed,
               "replay": len(replay.samples) if replay else 0}
    state = run.resume(model, optimizer, run_key)
    model.to(run.device)
    # The starting policy's per-token log-probs: π_old and the reference at once (module docstring).
    reference = cached_reference(
        config.out_dir / REFERENCE_FILE, digest, model, config.base, bool(state), run.device,
        lambda m: sample_token_logps(m, samples, pad_id, run.device, config.logprob_chunk,
                                     show=run.is_main and config.show_progress),
        run.is_main)
    model.train()
    model, optimizer = run.accelerator.prepare(model, optimizer)

    run.start(total, initial=state.get("step", 0))
    step, last, tokens = state.get("step", 0), {}, 0
    budget = KLBudget(config.kl_budget, config.stop_on_kl_budget, "lower --lr or raise --kl-coef")
    while step < total and not run.over_budget():
        indices = local_share(step_indices(step, len(samples), config.batch_size, config.seed), run.rank, run.world)
        chunk = [samples[i] for i in indices]
        batch = collate(chunk, pad_id).to(run.device)
        width = batch.input_ids.shape[1]
        mask = batch.trainable_mask
        ref = _pad_rows([reference[i].tolist() for i in indices], width).to(run.device)
        adv = _pad_rows([advantages[i] for i in indices], width).to(run.device)
        logp, entropy = token_logprobs(model, batch.input_ids, batch.attention_mask, mask, with_entropy=True,
                                       chunk_size=config.logprob_chunk)
        loss, stats = group_relative_loss(logp, ref, ref, adv, mask, config.clip_range, config.kl_coef)
        replayed = replay.loss(model, step, pad_id, run.device, config.logprob_chunk) if replay else torch.zeros(())
        grad_norm = run.update(loss + replayed, optimizer, params, config.max_grad_norm)
        step += 1
        tokens += int(batch.attention_mask.sum())
        local = torch.stack([loss.detach(), stats["kl"], masked_mean(entropy.detach(), mask), stats["clipfrac"],
                             masked_mean(adv.abs(), mask), grad_norm, replayed.detach()])
        values = run.accelerator.reduce(local, "mean").tolist()
        last = dict(zip(["loss", "kl", "entropy", "clipfrac", "mean_advantage_abs", "grad_norm", "replay_loss"], values,
                        strict=True))
        if not replay:
            del last["replay_loss"]
        run.log({"step": step, **last}, loss=last["loss"], kl=last["kl"])
        if budget.over(last["kl"]):
            break
        if step % config.save_every == 0 and step < total:
            run.save(model, optimizer, {"step": step})
    run.save(model, optimizer, {"step": step})
    unwrapped = run.accelerator.unwrap_model(model)
    run.finish(PLOT_KEYS, save=lambda: save_policy(
        unwrapped, tokenizer, config.out_dir,
        {"trainer": "grpo", "steps": step, "samples": len(samples), "groups": len(groups),
         "config": config.model_dump(mode="json")}))
    result = run.result(step, step < planned, last, tokens=tokens * run.world)
    result.notes.update({"groups": len(groups), "samples": len(samples), "kl_budget_passed": budget.passed})
    return result
