"""How far an inference engine's log-probs are from PyTorch's on the same tokens.

PPO recomputes old log-probs in PyTorch, so an engine's small int8 differences do not bias
the importance ratios; this figure says how small they are (reported by
bench/engine_speed.py, checked by the tests)."""
from __future__ import annotations

from collections.abc import Sequence


def torch_token_logprobs(model, ids: Sequence[int]) -> list[float]:
    """log p(ids[i] | ids[:i]) for i >= 1 from one teacher-forced PyTorch forward pass."""
    import torch

    with torch.inference_mode():
        x = torch.tensor([list(ids)], device=next(model.parameters()).device)
        logprobs = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
        return logprobs.gather(-1, x[0, 1:, None])[:, 0].tolist()


def mean_logprob_gap(engine, torch_model, ids: Sequence[int]) -> float:
    """Mean |engine log p - PyTorch log p| per token over ids (teacher-forced, all but the first)."""
    if len(ids) < 2:
        raise ValueError("need at least two tokens")
    ours, ref = engine.token_logprobs(ids), torch_token_logprobs(torch_model, ids)
    return sum(abs(a - b) for a, b in zip(ours, ref, strict=True)) / len(ref)
