"""Preference losses as small pure functions (TRL style), checked numerically in tests.

Inputs are per-pair sums of log-probabilities over trainable tokens only (generated, not
forced): `policy_chosen`, `policy_rejected` under the policy, `ref_chosen`, `ref_rejected`
under the frozen reference. Each returns per-pair losses plus the implicit rewards
β·(log π - log ref) that DPO logs as chosen/rejected rewards.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["sigmoid", "ipo"]


def _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> torch.Tensor:
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def sigmoid_dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023): -log σ(β[(π_c - ref_c) - (π_r - ref_r)]).
    With policy == reference the margin is 0 and the loss is ln 2. `label_smoothing` ε
    is conservative DPO: assume labels are flipped with probability ε."""
    logits = beta * _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """IPO (Azar et al. 2023): (h - 1/(2β))², a squared loss that does not push the margin to
    infinity on deterministic preferences. (TRL averages log-probs per token here; we keep
    sums, as for DPO, so trajectories of different length are treated alike by both.)"""
    h = _log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return (h - 1.0 / (2.0 * beta)) ** 2


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    loss_type: LossType = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (per-pair losses, chosen rewards, rejected rewards)."""
    if loss_type == "sigmoid":
        losses = sigmoid_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, label_smoothing)
    elif loss_type == "ipo":
        losses = ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    else:
        raise ValueError(f"unknown DPO loss type {loss_type!r} (sigmoid or ipo)")
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards
