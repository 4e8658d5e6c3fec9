"""Rankings as people give them: an order of one question's trajectories with ties, and
flags on bad steps.

Raw rankings are what the store keeps (who, when, which trajectories, the order, ties);
pairs are derived only at export or training time (`rankact.alignment.feedback.preferences.pairs`), so a change
in how pairs are made never loses information.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import combinations, groupby
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

RankingSource = Literal["human", "simulated"]


class StepFlag(BaseModel):
    trajectory_id: str
    step_index: int
    reason: str = ""


class Ranking(BaseModel):
    """An ordering of one question's trajectories, best first. Each inner list is a tie group."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    question_id: str
    annotator: str
    order: list[list[str]]
    source: RankingSource = "human"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    flags: list[StepFlag] = Field(default_factory=list)
    comment: str = ""

    @model_validator(mode="after")
    def _no_duplicates(self) -> Ranking:
        ids = self.trajectory_ids
        if not ids:
            raise ValueError("a ranking must order at least one trajectory")
        if any(len(group) == 0 for group in self.order):
            raise ValueError("a tie group cannot be empty")
        if len(ids) != len(set(ids)):
            raise ValueError("a trajectory appears more than once in the ranking")
        return self

    @property
    def trajectory_ids(self) -> list[str]:
        return [tid for group in self.order for tid in group]


def ranked_id_pairs(order: list[list[str]]) -> list[tuple[str, str]]:
    """(chosen, rejected) id pairs: every trajectory beats every one in a later group.
    K trajectories with no ties give C(K, 2) pairs; tied trajectories give none."""
    pairs: list[tuple[str, str]] = []
    for better, worse in combinations(range(len(order)), 2):
        pairs.extend((a, b) for a in order[better] for b in order[worse])
    return pairs




def order_by_score(scores: dict[str, Any]) -> list[list[str]]:
    """A ranking's order from scores (higher is better; any comparable values): best first,
    equal scores share a tie group, listed by id so the same scores always give the same order."""
    ranked = sorted(sorted(scores), key=scores.__getitem__, reverse=True)  # stable: ties stay by id
    return [list(group) for _, group in groupby(ranked, key=scores.__getitem__)]


def rank_scores(order: list[list[str]]) -> dict[str, float]:
    """A ranking (best first, inner lists tie) as scores in [0, 1]: 1 for the best place, 0 for
    the worst. Tied trajectories share the mean of the places they span (fractional ranking),
    so a tie says "equally good" and moves neither above the other."""
    n = sum(len(group) for group in order)
    if n == 0:
        return {}
    scores: dict[str, float] = {}
    place = 0
    for group in order:
        mean_place = place + (len(group) - 1) / 2  # 0-based places place .. place+len-1
        for trajectory_id in group:
            scores[trajectory_id] = 1.0 - mean_place / (n - 1) if n > 1 else 0.0
        place += len(group)
    return scores
