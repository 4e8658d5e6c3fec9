"""A simulated annotator, for experiments and tests: it ranks a question's trajectories by
a fixed scoring function instead of a person's judgement, and its rankings are stored with
`source="simulated"` so they are never mistaken for human feedback.

Score, compared in this order: the final answer is correct against the gold answers
(exact match, then gold contained in the answer, then token F1); a tool's observation held a
gold answer (the agent found the evidence, whatever it then wrote: what a person reading the
steps credits first); the run finished; fewer errors; fewer steps. Trajectories with equal
scores are tied.

`criteria="outcome"` stops after the evidence: runs that are equally right (or equally wrong,
with or without the evidence) tie, whatever their steps. That is how a person who only checks
answers ranks, and what group-relative training wants: a question whose runs are all wrong in
the same way carries no preference, instead of spreading full-size advantages over
differences that do not matter (finishing one step sooner).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from rankact.agent.trajectory import Trajectory
from rankact.alignment.evaluation.metrics import answer_contains, exact_match, token_f1
from rankact.alignment.feedback.records.rankings import Ranking, order_by_score
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

Score = tuple[float, float, float, float, int, int, int]
Criteria = Literal["process", "outcome"]


def found_evidence(trajectory: Trajectory, gold: list[str]) -> float:
    """1 when some tool observation contains a gold answer (normalized, as `answer_contains`)."""
    return max((answer_contains(step.observation, gold) for step in trajectory.steps
                if step.action is not None and step.error is None and step.observation), default=0.0)


def score(trajectory: Trajectory, gold: list[str], criteria: Criteria = "process") -> Score:
    answer = trajectory.final_answer
    if criteria == "outcome":
        return (exact_match(answer, gold), answer_contains(answer, gold), round(token_f1(answer, gold), 1),
                found_evidence(trajectory, gold), 0, 0, 0)
    return (
        exact_match(answer, gold),
        answer_contains(answer, gold),
        round(token_f1(answer, gold), 3),  # rounded so near-identical answers tie
        found_evidence(trajectory, gold),
        int(trajectory.status == "finished"),
        -trajectory.errors,
        -len(trajectory.steps),
    )


class SimulatedAnnotator:
    def __init__(self, name: str = "simulated", criteria: Criteria = "process",
                 score_fn: Callable[[Trajectory, list[str]], Any] | None = None) -> None:
        """`score_fn(trajectory, gold)` replaces the built-in score (e.g. a reward model's): any
        comparable value, higher is better."""
        self.name = name
        self.criteria = criteria
        self.score_fn = score_fn

    def rank(self, question_id: str, trajectories: list[Trajectory], gold: list[str]) -> Ranking:
        """Best first; trajectories with equal scores share a tie group."""
        scorer = self.score_fn or (lambda t, g: score(t, g, self.criteria))
        order = order_by_score({t.id: scorer(t, gold) for t in trajectories})
        return Ranking(question_id=question_id, annotator=self.name, order=order, source="simulated")

    def annotate(self, store: TrajectoryStore, question_id: str) -> Ranking:
        question = store.question(question_id)
        ranking = self.rank(question_id, store.list(question_id), question.gold)
        stored, _created = store.submit_ranking(ranking)
        return stored

    def annotate_all(self, store: TrajectoryStore, *, require_gold: bool = True) -> list[Ranking]:
        """Rank every question with two or more trajectories that this annotator has not ranked
        yet (and, by default, that has gold answers)."""
        done = {r.question_id for r in store.rankings(annotator=self.name)}
        stored = []
        for question in store.questions():
            if question.id in done or question.trajectories < 2 or (require_gold and not question.gold):
                continue
            stored.append(self.annotate(store, question.id))
        return stored
