"""Advantages over agent transcripts: per-token credit for generated tokens only."""
from __future__ import annotations

import torch

from rankact.alignment.training.masked import zero_masked


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


# --------------------------------------------------------------------------- group-relative
# Group-relative credit (GRPO, Shao et al. 2024) needs no critic: a question's K trajectories
# are compared with each other. The signal here is what people said (a ranking with ties),
# or a reward model's or a task's score; one set of pure functions serves all three.


def group_advantages(scores: list[float], *, scale: bool = True, eps: float = 1e-6) -> list[float]:
    """Scores of one group, centred on the group mean and (with `scale`) divided by the group's
    standard deviation (population). A group whose scores all tie carries no preference: every
    advantage is 0, so it adds no policy gradient."""
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    centred = [s - mean for s in scores]
    spread = (sum(c * c for c in centred) / len(centred)) ** 0.5
    if spread < eps:
        return [0.0] * len(scores)
    return [c / spread for c in centred] if scale else centred


def token_advantages(advantage: float, trainable: list[bool], steps: list[int], flagged: set[int],
                     flag_penalty: float = 1.0) -> list[float]:
    """Per-token advantages of one trajectory: its group advantage on every trainable token
    (generated, not forced), 0 elsewhere (prompt, observations, forced text). The tokens of a
    step a person flagged get min(advantage, 0) - flag_penalty instead: a flagged step is
    pushed down even inside the best trajectory, and never rewarded for the run's outcome."""
    out = []
    for learn, step in zip(trainable, steps, strict=True):
        if not learn:
            out.append(0.0)
        elif step in flagged:
            out.append(min(advantage, 0.0) - flag_penalty)
        else:
            out.append(advantage)
    return out
