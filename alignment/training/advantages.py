"""Advantages over agent transcripts: per-token credit for generated tokens only."""
from __future__ import annotations

import torch

from alignment.training.masked import zero_masked


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over trainable tokens only -> (advantages, returns).

    Masked positions (prompt, observation, forced, padding) are skipped entirely: the "next
    state" of a generated token is the next *generated* token, wherever it is. So a tool's
    observation of 300 tokens neither discounts (γ) nor decays the trace (λ): from the
    policy's view an observation is part of the environment's transition, not time it acted
    in. Rewards and values at masked positions are ignored; the last generated token
    bootstraps from 0 (the episode ends). Masked positions get advantage 0 and return 0,
    i.e. no value target. returns = advantages + values on valid tokens.
    """
    mask = mask.to(values.dtype)
    batch, length = values.shape
    advantages = torch.zeros_like(values)
    next_value = values.new_zeros(batch)
    next_advantage = values.new_zeros(batch)
    for t in reversed(range(length)):
        valid = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = torch.where(valid.bool(), advantage, torch.zeros_like(advantage))
        # Only a valid token becomes the next state of earlier tokens; masked ones pass through.
        next_value = torch.where(valid.bool(), values[:, t], next_value)
        next_advantage = torch.where(valid.bool(), advantage, next_advantage)
    returns = zero_masked(advantages + values, mask)
    return advantages, returns
