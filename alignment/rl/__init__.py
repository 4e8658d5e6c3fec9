"""Token-level RL building blocks shared by the SFT, DPO and PPO trainers: pure torch
functions over `[batch, time]` tensors with a mask of trainable (generated, not forced)
tokens, so prompt and observation tokens never contribute to a loss."""
from alignment.rl.core import (
    entropy_from_logits,
    gae,
    kl_k1,
    kl_k3,
    masked_mean,
    masked_sum,
    policy_loss,
    sequence_logprobs,
    value_loss,
    whiten,
)
from alignment.rl.losses import dpo_loss, ipo_loss, sigmoid_dpo_loss

__all__ = [
    "dpo_loss",
    "entropy_from_logits",
    "gae",
    "ipo_loss",
    "kl_k1",
    "kl_k3",
    "masked_mean",
    "masked_sum",
    "policy_loss",
    "sequence_logprobs",
    "sigmoid_dpo_loss",
    "value_loss",
    "whiten",
]
