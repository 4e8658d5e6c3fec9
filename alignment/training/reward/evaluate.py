"""Held-out evaluation of a reward model: pairwise accuracy with a Wilson 95% interval and
the mean margin r_chosen - r_rejected."""
from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel

from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.reward.batching import TruncationStats, tokenize_pairs


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sane at small n and near 0 or 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


class RewardEval(BaseModel):
    pairs: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_margin: float
    seconds: float = 0.0
    truncated_prompts: int = 0
    truncated_responses: int = 0

    def describe(self) -> str:
        return (
            f"accuracy {self.accuracy:.3f} (95% CI {self.ci_low:.3f}-{self.ci_high:.3f}, "
            f"{self.correct}/{self.pairs} pairs); mean margin {self.mean_margin:+.4f}"
        )


def summarize(chosen: Sequence[float], rejected: Sequence[float]) -> RewardEval:
    n = len(chosen)
    correct = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    low, high = wilson_interval(correct, n)
    margin = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / n if n else float("nan")
    return RewardEval(
        pairs=n, correct=correct, accuracy=correct / n if n else float("nan"), ci_low=low, ci_high=high,
        mean_margin=margin,
    )


def evaluate_pairs(model, pairs: Sequence[PreferencePair | TextPair], batch_size: int = 8) -> RewardEval:
    """Score every distinct sequence once, then compare each pair."""
    import time

    t0 = time.monotonic()
    tokenized, stats = tokenize_pairs(pairs, model.tokenizer, model.info.max_length)
    unique = list(dict.fromkeys(tuple(s) for p in tokenized for s in (p.chosen, p.rejected)))
    scores = dict(zip(unique, model.score_ids(unique, batch_size=batch_size), strict=True))
    result = summarize([scores[tuple(p.chosen)] for p in tokenized], [scores[tuple(p.rejected)] for p in tokenized])
    return _with_stats(result, stats, time.monotonic() - t0)


def _with_stats(result: RewardEval, stats: TruncationStats, seconds: float) -> RewardEval:
    return result.model_copy(update={
        "seconds": seconds, "truncated_prompts": stats.prompt_truncated,
        "truncated_responses": stats.response_truncated,
    })
