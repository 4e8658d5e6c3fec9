"""Ranked groups: a question's K trajectories with a score each, for group-relative training.

Where pairs (`rankact.alignment.feedback.preferences.pairs`) flatten a ranking into C(K,2) comparisons, a group
keeps it whole: every trajectory of the ranking with its place turned into a score
(`rankact.alignment.feedback.records.rankings.rank_scores`), and the steps the annotator flagged. Groups can
also be scored without people: by the task's gold answers (`task`) or by a reward model
(`reward`); then every trajectory a question has in the store is one group.
"""
from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from rankact.agent.errors import RankactError
from rankact.agent.trajectory import Trajectory
from rankact.alignment.feedback.records.rankings import Ranking, rank_scores
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore


class RankedGroup(BaseModel):
    question_id: str
    question: str
    trajectories: list[Trajectory]
    scores: list[float]  # one per trajectory, higher is better
    flagged: dict[str, list[int]] = Field(default_factory=dict)  # trajectory id -> flagged step indices
    source: str = "ranking"  # who scored it: human, simulated, task, reward


def group_from_ranking(ranking: Ranking, trajectories: dict[str, Trajectory], question: str) -> RankedGroup | None:
    """The ranking's trajectories that still exist, scored by place; None below two of them."""
    order = [[tid for tid in group if tid in trajectories] for group in ranking.order]
    order = [group for group in order if group]
    scores = rank_scores(order)
    if len(scores) < 2:
        return None
    ids = [tid for group in order for tid in group]
    flagged: dict[str, list[int]] = {}
    for flag in ranking.flags:
        if flag.trajectory_id in scores:
            flagged.setdefault(flag.trajectory_id, []).append(flag.step_index)
    return RankedGroup(question_id=ranking.question_id, question=question,
                       trajectories=[trajectories[tid] for tid in ids], scores=[scores[tid] for tid in ids],
                       flagged=flagged, source=ranking.source)


def ranked_groups(store: TrajectoryStore, *, source: str | None = None) -> list[RankedGroup]:
    """One group per ranking in the store (several annotators of a question: several groups)."""
    by_question: dict[str, list[Ranking]] = {}
    for ranking in store.rankings(source=source):
        by_question.setdefault(ranking.question_id, []).append(ranking)
    groups = []
    for question in store.questions():
        if question.id not in by_question:
            continue
        trajectories = {t.id: t for t in store.list(question.id)}
        for ranking in by_question[question.id]:
            group = group_from_ranking(ranking, trajectories, question.text)
            if group is not None:
                groups.append(group)
    return groups


def scored_groups(store: TrajectoryStore, score: Callable[[Trajectory, list[str]], float],
                  source: str) -> list[RankedGroup]:
    """Every question's trajectories as one group, scored by `score(trajectory, gold)`."""
    groups = []
    for question in store.questions():
        trajectories = store.list(question.id)
        if len(trajectories) < 2:
            continue
        groups.append(RankedGroup(question_id=question.id, question=question.text, trajectories=trajectories,
                                  scores=[float(score(t, question.gold)) for t in trajectories], source=source))
    return groups


def task_score(trajectory: Trajectory, gold: list[str]) -> float:
    """The task's own reward: 1 for a finished run whose answer holds a gold answer, else 0,
    plus a small bonus for token F1 so that near misses outrank nonsense."""
    from rankact.alignment.evaluation.evaluate import score_trajectory
    from rankact.alignment.tasks import Task

    if not gold:
        raise RankactError("the task signal needs gold answers: this question has none "
                           "(rank it, or use --signal reward)")
    result = score_trajectory(Task(question=trajectory.question, answers=gold), trajectory)
    return result.success + 0.1 * result.f1

