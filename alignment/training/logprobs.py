"""Per-token log-probabilities of trainable tokens, and forward passes that only project the
positions a loss can use onto the vocabulary.

Alignment (every function here): tensors are `[batch, time]` like `input_ids`; position t
holds log p(token t | tokens < t), so position 0 (no prediction) is never trainable.

Trainable tokens all come after the leading prompt (often half the transcript: system
prompt, tool descriptions). The vocabulary projection and its log-softmax (49k wide for
SmolLM2) are the largest activations in a small model, so we ask transformers for logits of
the tail only (`logits_to_keep`), from the position that predicts the first trainable token.
Results are padded back to `[B, T]`, aligned the same way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from alignment.training.masked import zero_masked


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


def _shift(next_token: torch.Tensor) -> torch.Tensor:
    """[B, T-1] values for tokens 1..T-1 -> [B, T] aligned with input_ids (position 0 = 0)."""
    return F.pad(next_token, (1, 0), value=0.0)


def sequence_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log p(input_ids[t] | input_ids[<t]) for every position t, `[B, T]`, 0 where mask is 0.

    `logits` is the model output on `input_ids` (`[B, T, V]`); logits[t] predicts token t+1.
    Computed as gathered logit minus logsumexp in float32: no `[B, T, V]` log-softmax copy.
    Sum over the time axis to get a sequence log-probability of the trainable tokens.
    """
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    token_logits = logits.gather(-1, targets).squeeze(-1)
    logp = _shift(token_logits - torch.logsumexp(logits, dim=-1))
    if mask is not None:
        logp = zero_masked(logp, mask)
    return logp


def entropy_from_logits(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy of the distribution that produced token t, `[B, T]` aligned like the
    log-probs (0 where masked). Average with `masked_mean` for a batch figure."""
    logits = logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    entropy = _shift(-(logp.exp() * logp).sum(-1))
    if mask is not None:
        entropy = zero_masked(entropy, mask)
    return entropy
