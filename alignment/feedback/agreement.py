"""How much annotators agree: Kendall's tau-b and pair agreement between rankings of the same
question, and the counts `rankact feedback stats` prints."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import combinations

from pydantic import BaseModel, Field

from alignment.feedback.rankings import Ranking
from alignment.feedback.store import TrajectoryStore


def _ranks(order: list[list[str]]) -> dict[str, int]:
    return {tid: position for position, group in enumerate(order) for tid in group}


def kendall_tau_b(a: list[list[str]], b: list[list[str]]) -> float | None:
    """Kendall's tau-b between two orders with ties, over the trajectories both contain.
    None when either order ties everything (the coefficient is undefined)."""
    ra, rb = _ranks(a), _ranks(b)
    items = sorted(set(ra) & set(rb))
    concordant = discordant = tied_a = tied_b = 0
    for x, y in combinations(items, 2):
        da, db = ra[x] - ra[y], rb[x] - rb[y]
        if da == 0:
            tied_a += 1
        if db == 0:
            tied_b += 1
        if da * db > 0:
            concordant += 1
        elif da * db < 0:
            discordant += 1
    n0 = len(items) * (len(items) - 1) // 2
    denominator = math.sqrt((n0 - tied_a) * (n0 - tied_b))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def pair_agreement(a: list[list[str]], b: list[list[str]]) -> tuple[int, int]:
    """(agreeing, compared): over pairs both orders rank strictly, how many they order alike."""
    ra, rb = _ranks(a), _ranks(b)
    items = sorted(set(ra) & set(rb))
    agree = compared = 0
    for x, y in combinations(items, 2):
        da, db = ra[x] - ra[y], rb[x] - rb[y]
        if da != 0 and db != 0:
            compared += 1
            agree += (da > 0) == (db > 0)
    return agree, compared


class FeedbackStats(BaseModel):
    questions: int
    trajectories: int
    questions_rankable: int = Field(description="questions with at least two trajectories")
    questions_ranked: int
    rankings: int
    rankings_by_source: dict[str, int]
    annotators: dict[str, int] = Field(description="rankings per annotator")
    pairs: int
    questions_multiply_ranked: int = Field(description="questions ranked by two or more annotators")
    annotator_pairs_compared: int = 0
    mean_kendall_tau: float | None = None
    pair_agreement_rate: float | None = None


def feedback_stats(store: TrajectoryStore) -> FeedbackStats:
    questions = store.questions()
    rankings = store.rankings()
    by_question: dict[str, list[Ranking]] = defaultdict(list)
    for ranking in rankings:
        by_question[ranking.question_id].append(ranking)

    taus: list[float] = []
    agree = compared = comparisons = 0
    for group in by_question.values():
        for first, second in combinations(group, 2):
            comparisons += 1
            tau = kendall_tau_b(first.order, second.order)
            if tau is not None:
                taus.append(tau)
            a, c = pair_agreement(first.order, second.order)
            agree += a
            compared += c

    pairs = 0
    for ranking in rankings:
        sizes = [len(group) for group in ranking.order]
        total = sum(sizes)
        pairs += (total * total - sum(s * s for s in sizes)) // 2  # pairs across tie groups
    return FeedbackStats(
        questions=len(questions),
        trajectories=sum(q.trajectories for q in questions),
        questions_rankable=sum(1 for q in questions if q.trajectories >= 2),
        questions_ranked=len(by_question),
        rankings=len(rankings),
        rankings_by_source=dict(Counter(r.source for r in rankings)),
        annotators=dict(Counter(r.annotator for r in rankings)),
        pairs=pairs,
        questions_multiply_ranked=sum(1 for g in by_question.values() if len(g) >= 2),
        annotator_pairs_compared=comparisons,
        mean_kendall_tau=sum(taus) / len(taus) if taus else None,
        pair_agreement_rate=agree / compared if compared else None,
    )
