"""Pairwise reward losses as pure functions of scores, so tests can check them by hand."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
