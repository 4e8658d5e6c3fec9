"""Rankings as people give them, and the preference pairs derived from them.

Raw rankings are what the store keeps (who, when, which trajectories, the order, ties);
pairs are derived only at export or training time, so a change in how pairs are made
never loses information.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from agent.trajectory import Trajectory

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


class PreferencePair(BaseModel):
    """One comparison with both trajectories in full (segments included), so trainers can
    mask prompts and observations and train only on generated tokens."""

    question_id: str
    question: str
    chosen: Trajectory
    rejected: Trajectory
    ranking_id: str | None = None
    annotator: str | None = None
    source: RankingSource | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TextPair(BaseModel):
    """A prompt/response comparison ({prompt, chosen, rejected}, as TRL and HH-RLHF use)."""

    prompt: str
    chosen: str
    rejected: str
    group: str | None = None  # pairs of one prompt share a group (kept in one batch)


def pairs_from_ranking(ranking: Ranking, trajectories: dict[str, Trajectory], question: str) -> list[PreferencePair]:
    return [
        PreferencePair(
            question_id=ranking.question_id,
            question=question,
            chosen=trajectories[a],
            rejected=trajectories[b],
            ranking_id=ranking.id,
            annotator=ranking.annotator,
            source=ranking.source,
        )
        for a, b in ranked_id_pairs(ranking.order)
    ]


def prompt_and_response(trajectory: Trajectory) -> tuple[str, str]:
    """Split a transcript into the prompt the model was first given and everything after.
    The response keeps observations (they are context for later steps); trainers that need
    masking use the segments instead."""
    segments = trajectory.segments
    cut = 0
    while cut < len(segments) and segments[cut].role == "prompt" and not segments[cut].forced:
        cut += 1
    prompt = "".join(s.text for s in segments[:cut])
    response = "".join(s.text for s in segments[cut:])
    return prompt, response


def to_text_pair(pair: PreferencePair) -> TextPair:
    prompt, chosen = prompt_and_response(pair.chosen)
    rejected_prompt, rejected = prompt_and_response(pair.rejected)
    if rejected_prompt != prompt:
        # Same question, different prompt (e.g. another prompt version): keep each whole.
        return TextPair(prompt="", chosen=prompt + chosen, rejected=rejected_prompt + rejected, group=pair.question_id)
    return TextPair(prompt=prompt, chosen=chosen, rejected=rejected, group=pair.question_id)
