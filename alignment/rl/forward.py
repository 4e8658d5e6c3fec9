"""Forward passes that only project the positions a loss can use onto the vocabulary.

Trainable tokens all come after the leading prompt (often half the transcript: system
prompt, tool descriptions). The vocabulary projection and its log-softmax (49k wide for
SmolLM2) are the largest activations in a small model, so we ask transformers for logits of
the tail only (`logits_to_keep`), from the position that predicts the first trainable token.
Results are padded back to `[B, T]`, aligned as in `alignment.rl.core`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from alignment.rl.core import entropy_from_logits, sequence_logprobs


def tail_start(mask: torch.Tensor) -> int:
    """First position whose logits are needed: the one before the earliest trainable token."""
    valid = mask.bool().any(dim=0)
    if not valid.any():
        return max(mask.shape[1] - 1, 0)
    return max(int(valid.nonzero()[0].item()) - 1, 0)


def pad_left(x: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(x, (length - x.shape[1], 0), value=0.0)


def tail_logprobs(logits_tail: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor,
                  with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, T] log-probs (and entropies) from logits of the last K positions."""
    length = input_ids.shape[1]
    start = length - logits_tail.shape[1]
    ids, m = input_ids[:, start:], mask[:, start:]
    logp = pad_left(sequence_logprobs(logits_tail, ids, m), length)
    entropy = pad_left(entropy_from_logits(logits_tail, m), length) if with_entropy else None
    return logp, entropy


def lm_tail_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor, **kwargs):
    """The model's output with logits only from `tail_start(mask)` on."""
    keep = input_ids.shape[1] - tail_start(mask)
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep, **kwargs)


def policy_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T] log-probs of trainable tokens (0 elsewhere) under a causal LM."""
    logits = lm_tail_logits(model, input_ids, attention_mask, mask).logits
    return tail_logprobs(logits, input_ids, mask)[0]
