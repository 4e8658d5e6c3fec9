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
from typing import ClassVar

import torch

from rankact.agent.errors import RankactError
from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.groups import RankedGroup
from rankact.alignment.training.advantages import group_advantages, token_advantages
from rankact.alignment.training.group_source import load_groups
from rankact.alignment.training.grpo_config import GRPOConfig
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.losses import group_relative_loss
from rankact.alignment.training.masked import masked_mean
from rankact.alignment.training.monitors import KLBudget
from rankact.alignment.training.offline import OfflineTrainer, StepLoss
from rankact.alignment.training.policy import resolve_base
from rankact.alignment.training.reference import cached_reference, fingerprint, sample_token_logps
from rankact.alignment.training.runtime import TrainResult
from rankact.alignment.training.tokenize import Encoded, collate, encode_trajectory, require_exact_ids

log = logging.getLogger(__name__)
REFERENCE_FILE = "reference_token_logps.pt"
PLOT_KEYS = ["loss", "kl", "entropy", "clipfrac", "mean_advantage_abs", "replay_loss"]
__all__ = ["GRPOConfig", "GRPOTrainer", "encode_groups", "train_grpo"]


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


class GRPOTrainer(OfflineTrainer):
    """GRPO on the shared offline loop: the data are the groups' samples with per-token
    advantages, the loss `losses.group_relative_loss`; KL is part of the loss, so the budget
    reads it every step instead of a probe."""

    name = "GRPO"
    plot_keys = tuple(PLOT_KEYS)
    postfix: ClassVar[dict[str, str]] = {"loss": "loss", "kl": "kl"}

    def __init__(self, config: GRPOConfig, groups: list[RankedGroup] | None = None, accelerator=None):
        super().__init__(config, accelerator)
        self.groups = groups
        self.samples: list[Encoded] = []
        self.advantages: list[list[float]] = []
        self.digest = ""
        self.reference: list[torch.Tensor] = []
        self.budget = KLBudget(config.kl_budget, config.stop_on_kl_budget, "lower --lr or raise --kl-coef")

    def load(self) -> None:
        c = self.config
        if self.groups is None:
            if c.db is None:
                raise RankactError("give a trajectory store (--db) whose rankings or questions are the groups")
            self.groups = load_groups(c.db, c.signal, reward_model=str(c.reward_model) if c.reward_model else None)
        require_exact_ids((t for g in self.groups for t in g.trajectories), c.retokenize)

    def encode(self, tokenizer) -> int:
        c = self.config
        self.samples, self.advantages = encode_groups(self.groups, tokenizer, c)
        self.digest = fingerprint(resolve_base(c.base), c.max_length, ([s.input_ids, s.trainable] for s in self.samples))
        return len(self.samples)

    def data_key(self) -> dict:
        return {"samples": self.digest[:16]}

    def before_training(self, model, resuming: bool) -> None:
        # The starting policy's per-token log-probs: π_old and the reference at once (module docstring).
        c, run = self.config, self.run
        self.reference = cached_reference(
            c.out_dir / REFERENCE_FILE, self.digest, model, c.base, resuming, run.device,
            lambda m: sample_token_logps(m, self.samples, self.pad_id, run.device, c.logprob_chunk,
                                         show=run.is_main and c.show_progress),
            run.is_main)

    def step(self, model, indices: list[int]) -> StepLoss:
        c, device = self.config, self.run.device
        batch = collate([self.samples[i] for i in indices], self.pad_id).to(device)
        width = batch.input_ids.shape[1]
        mask = batch.trainable_mask
        ref = _pad_rows([self.reference[i].tolist() for i in indices], width).to(device)
        adv = _pad_rows([self.advantages[i] for i in indices], width).to(device)
        logp, entropy = token_logprobs(model, batch.input_ids, batch.attention_mask, mask, with_entropy=True,
                                       chunk_size=c.logprob_chunk)
        loss, stats = group_relative_loss(logp, ref, ref, adv, mask, c.clip_range, c.kl_coef)
        figures = {"loss": loss.detach(), "kl": stats["kl"], "entropy": masked_mean(entropy.detach(), mask),
                   "clipfrac": stats["clipfrac"], "mean_advantage_abs": masked_mean(adv.abs(), mask)}
        return StepLoss(loss, figures, int(batch.attention_mask.sum()))

    def should_stop(self, metrics: dict[str, float]) -> bool:
        return self.budget.over(metrics["kl"])

    def metadata(self, steps: int) -> dict:
        return {"trainer": "grpo", "steps": steps, "samples": len(self.samples), "groups": len(self.groups),
                "config": self.config.model_dump(mode="json")}

    def notes(self) -> dict:
        return {"groups": len(self.groups), "samples": len(self.samples), "kl_budget_passed": self.budget.passed}


def train_grpo(config: GRPOConfig, groups: list[RankedGroup] | None = None, accelerator=None) -> TrainResult:
    return GRPOTrainer(config, groups, accelerator).train()
