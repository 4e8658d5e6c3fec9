"""Every training loss as a small pure function (TRL style), checked numerically in tests.

- Preference losses (DPO, IPO): inputs are per-pair sums of log-probabilities over trainable tokens only (generated, not
forced): `policy_chosen`, `policy_rejected` under the policy, `ref_chosen`, `ref_rejected`
under the frozen reference. Each returns per-pair losses plus the implicit rewards
β·(log π - log ref) that DPO logs as chosen/rejected rewards.
- The reward model's Bradley-Terry loss over pairs of scalar scores.
- PPO's clipped policy and value losses, the group-relative (GRPO) loss, and the SFT negative log-likelihood, over
  `[batch, time]` tensors with a mask of trainable tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rankact.alignment.training.dpo_config import LossType
from rankact.alignment.training.kl import kl_k3
from rankact.alignment.training.logprobs import sequence_logprobs
from rankact.alignment.training.masked import masked_mean


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


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate: -min(r·A, clip(r, 1±ε)·A), averaged over trainable tokens.
    Returns the loss and diagnostics (clip fraction, approximate KL old→new)."""
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((torch.abs(ratio - 1.0) > clip_range).float(), mask),
            # k3 between the rollout policy and the current one: CleanRL's early-stop signal.
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
        }
    return loss, stats


def group_relative_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
    kl_coef: float = 0.04,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO's objective on per-token advantages: the clipped surrogate plus β·KL(π‖ref) (the k3
    estimator, in the loss rather than the reward, as GRPO does), averaged over all trainable
    tokens of the batch (token-level, as DAPO: a long trajectory is not worth less per token)."""
    pg_loss, stats = policy_loss(logp, old_logp, advantages, mask, clip_range)
    kl = masked_mean(kl_k3(logp, ref_logp), mask)
    stats = {**stats, "kl": kl.detach()}
    return pg_loss + kl_coef * kl, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5·max((V-R)², (clip(V, V_old±ε)-R)²) over trainable tokens. Clipping keeps the
    critic from jumping far from the values the advantages were computed with."""
    unclipped = (values - returns) ** 2
    if clip_range_value is None:
        return 0.5 * masked_mean(unclipped, mask), {"vf_clipfrac": values.new_zeros(())}
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((clipped > unclipped).float(), mask)}
    return loss, stats


def masked_nll(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per trainable token from per-token log-probs (the SFT loss and the
    replay term: the trainers get `logp` from `logprobs.token_logprobs`, never full logits)."""
    return -masked_mean(logp, mask)


def nll_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`masked_nll` from full logits: its readable definition, for tests and small models."""
    return masked_nll(sequence_logprobs(logits, input_ids, mask), mask)


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: float | torch.Tensor = 0.0,
    center_coef: float = 0.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """-log σ(r_c - r_r - margin), averaged over pairs (weighted if `weights` is given).

    `center_coef` adds coef * mean((r_c + r_r)^2): it pins the mean reward near zero, since
    the pairwise loss alone is blind to a constant shift (Eisenstein et al., 2023).
    `weights` lets every prompt count once however many comparisons it has (InstructGPT
    divides each prompt's loss by its C(K,2) pairs)."""
    per_pair = -F.logsigmoid(chosen - rejected - margin)
    if center_coef:
        per_pair = per_pair + center_coef * (chosen + rejected) ** 2
    if weights is None:
        return per_pair.mean()
    return (per_pair * weights).sum() / weights.sum()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Fraction of pairs scored strictly in the right order (a tie counts as wrong)."""
    if chosen.numel() == 0:
        return float("nan")
    return (chosen > rejected).float().mean().item()
