"""Collapse monitors: checked numerically on trajectories written for the test."""
from __future__ import annotations

import math

import pytest

from rankact.agent.trajectory import ModelRef, Step, Trajectory
from rankact.alignment.evaluation.collapse import (
    collapse_warnings,
    distinct_thought_ratio,
    template_spread,
    thought_token_entropy,
)


def _run(*thoughts: str) -> Trajectory:
    return Trajectory(question="q", model=ModelRef(backend="t", name="t"), prompt_version="v", steps=[Step(index=i, thought=t) for i, t in enumerate(thoughts)])


def test_distinct_ratio_counts_normalized_thoughts():
    runs = [_run("Think of the answer", "I now know the answer"), _run("think  of the ANSWER", "I now know the answer")]
    assert distinct_thought_ratio(runs) == pytest.approx(2 / 4)
    assert distinct_thought_ratio([_run("a", "b"), _run("c")]) == 1.0
    assert distinct_thought_ratio([]) == 1.0


def test_entropy_of_the_words_in_thoughts():
    assert thought_token_entropy([_run("a a a a")]) == 0.0
    assert thought_token_entropy([_run("a b"), _run("c d")]) == pytest.approx(2.0)  # 4 equally likely words
    skewed = thought_token_entropy([_run("a a a b")])
    assert skewed == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_template_spread_is_best_minus_worst_group():
    spread = template_spread([1, 1, 0, 1, 0, 0], ["plus", "plus", "sum", "sum", "words", None])
    assert spread.by_group == {"plus": 1.0, "sum": 0.5, "words": 0.0}
    assert spread.spread == 1.0
    assert template_spread([], []).spread == 0.0


def test_warnings_fire_on_collapse_and_on_in_up_out_down_only():
    base = {"distinct_thought_ratio": 0.8, "success_in": 0.2, "success_out": 0.2}
    assert collapse_warnings(1, {"distinct_thought_ratio": 0.7, "success_in": 0.5, "success_out": 0.4}, base) == []
    collapsed = collapse_warnings(1, {"distinct_thought_ratio": 0.3, "success_in": 0.5, "success_out": 0.4}, base)
    assert len(collapsed) == 1 and "thoughts collapsed" in collapsed[0]
    diverging = collapse_warnings(2, {"distinct_thought_ratio": 0.7, "success_in": 0.9, "success_out": 0.3}, base,
                                  previous={"success_in": 0.6, "success_out": 0.45})
    assert len(diverging) == 1 and "out of distribution fell" in diverging[0]
    # Without an out-of-distribution set there is nothing to compare.
    assert collapse_warnings(1, {"success_in": 0.9, "success_out": None}, base) == []
