"""The PPO model: the policy LM plus a critic, behind one `forward` (one module, so DDP
sees a single forward per backward). The forward returns the policy's hidden states, not
logits; log-probs are projected from them chunk by chunk (`rankact.alignment.training.logprobs`).

Critic options:
- `ValueHead`: a small `nn.Linear(hidden, 1)` on the policy's last hidden states. Cheap:
  one shared backbone. Zero-initialised so the first values are 0 and the first value loss
  trains the head without a random bias leaking into the first advantages.
- `RewardCritic`: a separate backbone + head initialised from the trained reward model,
  which already maps hidden states to "how good is this trajectory", a better starting
  value function than zero; costs a second forward pass.

Values follow the log-prob alignment of `rankact.alignment.training.logprobs`: values[:, t] is V of the state
*before* token t (computed from the hidden state at t-1, the one that predicts token t).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rankact.alignment.training.logprobs import final_hidden


def _shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x[:, :-1], (1, 0), value=0.0)


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return _shift(self.linear(hidden.float()).squeeze(-1))


class RewardCritic(nn.Module):
    """Per-token values from a copy of the reward model's backbone and head."""

    def __init__(self, reward_model: nn.Module):
        super().__init__()
        rm = copy.deepcopy(reward_model)
        self.decoder = rm.decoder()
        self.head = rm.head
        for p in self.parameters():
            p.requires_grad_(True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return _shift(self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float())


class ActorCritic(nn.Module):
    def __init__(self, policy: nn.Module, critic: nn.Module | None = None):
        super().__init__()
        self.policy = policy
        if critic is None:
            critic = ValueHead(policy.config.hidden_size)
        self.critic = critic

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (the policy's last hidden state [B, T, H], values [B, T]).

        Hidden states, not logits: the caller projects only trainable positions onto the
        vocabulary, in chunks (`logprobs.hidden_logprobs` with `get_output_embeddings()`), and
        the value head reads the same states, so one decoder pass serves both."""
        hidden = final_hidden(self.policy, input_ids, attention_mask)
        if isinstance(self.critic, ValueHead):
            values = self.critic(hidden)
        else:
            values = self.critic(input_ids, attention_mask)
        return hidden, values

    def get_output_embeddings(self) -> nn.Module:
        """The policy's LM head, so `logprobs.lm_head` finds it through a DDP wrapper too."""
        return self.policy.get_output_embeddings()
