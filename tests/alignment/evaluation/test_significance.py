"""Intervals and paired tests, against values computed by hand."""
from __future__ import annotations

import math

import pytest

from rankact.alignment.evaluation.significance import (
    bootstrap_interval,
    mcnemar_exact,
    paired_bootstrap,
    paired_difference,
    sign_flip_p,
    wilson_interval,
)


def test_wilson_interval_matches_the_formula_and_stays_in_bounds():
    z = 1.959963984540054
    low, high = wilson_interval(5, 10)
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    zero_low, zero_high = wilson_interval(0, 10)
    assert zero_low == 0.0 and zero_high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 50 questions: about +-13 points around 50%, the "±10 points" rule of thumb is optimistic
    low, high = wilson_interval(25, 50)
    assert high - low == pytest.approx(0.267, abs=0.002)


def test_mcnemar_exact_counts_only_disagreements():
    # 8 gained, 1 lost: p = 2 * P(X <= 1), X ~ Bin(9, 1/2) = 2 * 10 / 512
    baseline = [False] * 8 + [True] + [True] * 5 + [False] * 5
    other = [True] * 8 + [False] + [True] * 5 + [False] * 5
    assert mcnemar_exact(baseline, other) == (8, 1, pytest.approx(20 / 512))
    assert mcnemar_exact([True, False], [True, False]) == (0, 0, 1.0)
    assert mcnemar_exact([False] * 3, [True] * 3)[2] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_paired_bootstrap_centres_on_the_mean_difference():
    assert paired_bootstrap([0.5] * 4, [0.5] * 4) == (0.0, 0.0, 0.0)
    diff, low, high = paired_bootstrap([0, 0, 1, 0, 0, 1], [1, 1, 1, 0, 1, 1])
    assert diff == pytest.approx(0.5) and 0.0 <= low < diff < high <= 1.0
    low, high = bootstrap_interval([0.2, 0.4, 0.6, 0.8])
    assert 0.2 <= low < 0.5 < high <= 0.8


def test_sign_flip_p_counts_sign_assignments_at_least_as_extreme():
    # Three equal gains: of the 8 sign assignments only all-plus and all-minus reach |1.5|.
    assert sign_flip_p([0, 0, 0], [0.5, 0.5, 0.5]) == pytest.approx(2 / 8)
    # Gains 1.0 and 0.1: sums 1.1, 0.9, -0.9, -1.1; two reach 1.1.
    assert sign_flip_p([0.0, 0.2], [1.0, 0.3]) == pytest.approx(2 / 4)
    assert sign_flip_p([0.3, 0.7], [0.3, 0.7]) == 1.0  # no task differs
    assert sign_flip_p([0.0] * 5 + [0.4], [0.0] * 5 + [0.4]) == 1.0
    # Past 16 differing tasks it samples: 20 equal gains (exact p = 2 / 2**20) stay far below 0.001,
    # alternating gains and losses stay near 1.
    assert sign_flip_p([0.0] * 20, [0.5] * 20) < 1e-3
    assert sign_flip_p([0.0] * 20, [0.5, -0.5] * 10) > 0.9
    with pytest.raises(ValueError, match="same tasks"):
        sign_flip_p([0.1], [0.1, 0.2])


def test_paired_difference_adds_mcnemar_for_pass_fail_metrics_and_sign_flip_for_graded_ones():
    rate = paired_difference("success", "base", "tuned", [0, 0, 1], [1, 1, 1], binary=True)
    assert rate.difference == pytest.approx(2 / 3) and (rate.gained, rate.lost) == (2, 0)
    assert rate.p_value == pytest.approx(0.5)
    f1 = paired_difference("token F1", "base", "tuned", [0.1, 0.2], [0.3, 0.2], binary=False)
    assert f1.difference == pytest.approx(0.1) and f1.gained is None
    assert f1.p_value == pytest.approx(1.0)  # one differing task: either sign is as extreme
