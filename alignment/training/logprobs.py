"""Per-token log-probabilities (and entropies) of trainable tokens, projected onto the
vocabulary a chunk at a time.

Alignment (every function here): tensors are `[batch, time]` like `input_ids`; position t
holds log p(token t | tokens < t), so position 0 (no prediction) is never trainable, and
every masked position holds 0.

Why chunks: the vocabulary projection (49k wide for SmolLM2) is the largest activation of a
small model. Full logits of 4 sequences x 1024 tokens are 0.8 GB in float32, and log-softmax,
its backward and the float copies multiply that. So the decoder runs once to its last hidden
state, only the positions that predict a trainable token are gathered (prompt and tool
observations never reach the LM head), and those go through the head `chunk_size` rows at a
time inside `torch.utils.checkpoint`: backward recomputes a chunk's `[chunk, V]` logits
instead of keeping them, so peak memory no longer grows with tokens x vocabulary.

`chunk_size=None` projects the whole tail at once (the earlier path, kept as the memory
benchmark's baseline and as the readable definition the tests compare against).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rankact.alignment.training.config import DEFAULT_CHUNK_SIZE
from rankact.alignment.training.masked import zero_masked

# --------------------------------------------------------------------------- the model's parts


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP / DataParallel (and similar) wrappers, which keep it in `.module`.
    A peft model stays as it is: its LoRA layers are injected in place and it forwards
    `get_output_embeddings` to the model it wraps."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def lm_head(model: nn.Module) -> nn.Module:
    """The vocabulary projection, called as a module (a LoRA-wrapped head works too)."""
    return unwrap(model).get_output_embeddings()


def final_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, H] last hidden state of the decoder (after its final norm: what the head reads).

    Through the model's own forward rather than `get_decoder()`, so that a DDP wrapper sees
    the one forward per backward it needs. `logits_to_keep=1` makes the head project a single
    position, which we ignore: the positions we need are projected in chunks."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                logits_to_keep=1, use_cache=False)
    return out.hidden_states[-1]


# --------------------------------------------------------------------------- log-probs


def token_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor, *,
                   temperature: float = 1.0, with_entropy: bool = False,
                   chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, T] log-probs of the trainable tokens under a causal LM (and entropies if asked):
    one decoder pass, then the head over trainable positions only."""
    hidden = final_hidden(model, input_ids, attention_mask)
    return hidden_logprobs(lm_head(model), hidden, input_ids, mask, temperature=temperature,
                           with_entropy=with_entropy, chunk_size=chunk_size)


def hidden_logprobs(head: nn.Module, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, *,
                    temperature: float = 1.0, with_entropy: bool = False,
                    chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, T] log-probs (and entropies) from the decoder's last hidden state `hidden`.

    Logits are divided by `temperature` before the softmax: PPO's policy is the tempered
    distribution the rollouts sampled from."""
    if chunk_size is None:
        start = tail_start(mask)
        logits = head(hidden[:, start:]).float() / temperature
        return tail_logprobs(logits, input_ids, mask, with_entropy)
    # hidden[b, t-1] predicts token t: gather just the trainable (b, t), flattened to rows.
    trainable = mask.bool().clone()
    trainable[:, 0] = False
    rows, cols = trainable.nonzero(as_tuple=True)
    logp, entropy = chunked_logprobs(head, hidden[rows, cols - 1], input_ids[rows, cols],
                                     temperature=temperature, with_entropy=with_entropy, chunk_size=chunk_size)
    return _scatter(logp, rows, cols, mask.shape), (_scatter(entropy, rows, cols, mask.shape) if with_entropy else None)


def chunked_logprobs(head: nn.Module, states: torch.Tensor, targets: torch.Tensor, *, temperature: float = 1.0,
                     with_entropy: bool = False,
                     chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[N] log p(targets) (and entropies) for N hidden `states` [N, H], `chunk_size` rows at a time."""
    # Checkpoint only when a backward will come: then each chunk keeps its input rows, not its logits.
    grad = torch.is_grad_enabled() and (states.requires_grad or any(p.requires_grad for p in head.parameters()))
    pieces = []
    for rows, ids in zip(states.split(chunk_size), targets.split(chunk_size), strict=True):
        if grad:
            pieces.append(checkpoint(_project, head, rows, ids, temperature, with_entropy, use_reentrant=False))
        else:
            pieces.append(_project(head, rows, ids, temperature, with_entropy))
    logp = torch.cat([p[0] for p in pieces]) if pieces else states.new_zeros(0, dtype=torch.float32)
    if not with_entropy:
        return logp, None
    entropy = torch.cat([p[1] for p in pieces]) if pieces else states.new_zeros(0, dtype=torch.float32)
    return logp, entropy


def _project(head: nn.Module, states: torch.Tensor, targets: torch.Tensor, temperature: float,
             with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk: gathered logit minus logsumexp in float32 (no [n, V] log-softmax copy)."""
    logits = head(states).float() / temperature
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp, None
    # H = -Σ p log p = lse - Σ p·logit, with p = exp(logit - lse).
    probs = torch.exp(logits - lse.unsqueeze(-1))
    return logp, lse - (probs * logits).sum(-1)


def _scatter(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """[N] values back to [B, T] (0 elsewhere); differentiable in `values`."""
    return values.new_zeros(shape).index_put((rows, cols), values)


# --------------------------------------------------------------------------- full logits


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
