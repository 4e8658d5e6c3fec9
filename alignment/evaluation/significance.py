"""How sure a result is: intervals for one model's rates, and paired tests between two models
run on the same tasks. Pure functions, no SciPy.

- A rate of n tasks (success, exact match) gets a Wilson score interval: unlike mean ± 1.96·se
  it stays inside [0, 1] and is not degenerate at 0% or 100%, which small evaluations hit.
- A mean of a bounded score (token F1) gets a percentile bootstrap interval.
- Two models on the same tasks are compared per task (paired): the difference of means with a
  paired bootstrap interval, and a p-value: for a pass/fail metric the exact McNemar test, which
  looks only at the tasks where the two disagree, for a graded one (token F1) the paired
  sign-flip permutation test (a paired test has far more power than comparing two independent
  intervals).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a rate successes/n; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(values: Sequence[float], *, iterations: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`."""
    if not values:
        return 0.0, 0.0
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(iterations))
    return _percentiles(means, level)


def _percentiles(sorted_values: list[float], level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    last = len(sorted_values) - 1
    return sorted_values[round(tail * last)], sorted_values[round((1 - tail) * last)]


def paired_bootstrap(baseline: Sequence[float], other: Sequence[float], *, iterations: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(mean of other - baseline, interval low, interval high), resampling tasks in pairs."""
    if len(baseline) != len(other):
        raise ValueError("paired comparison needs the same tasks on both sides")
    if not baseline:
        return 0.0, 0.0, 0.0
    diffs = [b - a for a, b in zip(baseline, other, strict=True)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(iterations))
    low, high = _percentiles(means, level)
    return sum(diffs) / n, low, high


def mcnemar_exact(baseline: Sequence[bool], other: Sequence[bool]) -> tuple[int, int, float]:
    """Exact (binomial) McNemar test on paired pass/fail results -> (tasks only the other model
    passed, tasks only the baseline passed, two-sided p-value). With no disagreement p = 1."""
    if len(baseline) != len(other):
        raise ValueError("paired comparison needs the same tasks on both sides")
    gained = sum(1 for a, b in zip(baseline, other, strict=True) if b and not a)
    lost = sum(1 for a, b in zip(baseline, other, strict=True) if a and not b)
    n = gained + lost
    if n == 0:
        return gained, lost, 1.0
    k = min(gained, lost)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return gained, lost, min(1.0, 2 * tail)


class PairedDifference(BaseModel):
    """One metric of `other` against `baseline` over the same tasks."""

    metric: str
    baseline: str
    other: str
    n: int
    difference: float  # other - baseline, in the metric's units (a rate: fraction of tasks)
    low: float
    high: float
    p_value: float | None = None  # exact McNemar for pass/fail metrics, sign-flip permutation for graded ones
    gained: int | None = None  # tasks only `other` passed
    lost: int | None = None  # tasks only `baseline` passed


def sign_flip_p(baseline: Sequence[float], other: Sequence[float], *, iterations: int = 10000,
                seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip permutation test: under "no difference" each
    task's difference is as likely negated, so p is the share of random sign assignments whose
    mean difference is at least as far from 0 as the observed one. Exact (every assignment)
    up to 16 non-zero differences; Monte Carlo with the observed one counted beyond that."""
    if len(baseline) != len(other):
        raise ValueError("paired comparison needs the same tasks on both sides")
    diffs = [b - a for a, b in zip(baseline, other, strict=True) if b != a]
    if not diffs:
        return 1.0
    observed = abs(sum(diffs)) - 1e-12 * len(diffs)  # float noise must not hide a tie
    if len(diffs) <= 16:
        hits = sum(abs(sum(d if mask >> i & 1 else -d for i, d in enumerate(diffs))) >= observed
                   for mask in range(2 ** len(diffs)))
        return hits / 2 ** len(diffs)
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed for _ in range(iterations))
    return (hits + 1) / (iterations + 1)


def paired_difference(metric: str, baseline_label: str, other_label: str, baseline: Sequence[float],
                      other: Sequence[float], *, binary: bool) -> PairedDifference:
    diff, low, high = paired_bootstrap(baseline, other)
    result = PairedDifference(metric=metric, baseline=baseline_label, other=other_label, n=len(baseline),
                              difference=diff, low=low, high=high)
    if binary:
        gained, lost, p = mcnemar_exact([x >= 0.5 for x in baseline], [x >= 0.5 for x in other])
        result.p_value, result.gained, result.lost = p, gained, lost
    else:
        result.p_value = sign_flip_p(baseline, other)
    return result
