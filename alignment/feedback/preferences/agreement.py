"""How much annotators agree: Kendall's tau-b and pair agreement between rankings of the same
question; how often end users agree with annotators; and the counts by source that
`rankact feedback stats` prints."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import combinations

from pydantic import BaseModel, Field

from rankact.alignment.feedback.preferences.end_user_data import by_app, trajectory_labels, vote_id_pairs
from rankact.alignment.feedback.records.end_user import EndUserFeedback
from rankact.alignment.feedback.records.rankings import Ranking, ranked_id_pairs
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore


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


class EndUserStats(BaseModel):
    votes: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict, description="thumbs, score, choice")
    up: int = Field(0, description="thumbs up and scores above 0")
    down: int = Field(0, description="thumbs down and scores below 0")
    neutral: int = Field(0, description="scores of 0")
    end_users: int = Field(0, description="distinct end users (per app)")
    trajectories_desirable: int = Field(0, description="majority up: KTO label true")
    trajectories_undesirable: int = Field(0, description="majority down: KTO label false")
    trajectories_tied: int = Field(0, description="as many up as down: no label")
    pairs_from_choices: int = 0
    pairs_from_thumbs: int = 0
    annotator_pairs_compared: int = Field(0, description="end-user pairs an annotator's ranking also orders")
    annotator_agreement_rate: float | None = Field(None, description="of those, the share ordered alike")


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
    pairs_by_source: dict[str, int] = Field(default_factory=dict, description="human, simulated, end-user")
    end_user: EndUserStats = Field(default_factory=EndUserStats)


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

    pairs_by_source: Counter[str] = Counter()
    for ranking in rankings:
        sizes = [len(group) for group in ranking.order]
        total = sum(sizes)
        pairs_by_source[ranking.source] += (total * total - sum(s * s for s in sizes)) // 2  # across tie groups
    end_user = end_user_stats(store, by_question)
    pairs_by_source["end-user"] = end_user.pairs_from_choices + end_user.pairs_from_thumbs
    return FeedbackStats(
        questions=len(questions),
        trajectories=sum(q.trajectories for q in questions),
        questions_rankable=sum(1 for q in questions if q.trajectories >= 2),
        questions_ranked=len(by_question),
        rankings=len(rankings),
        rankings_by_source=dict(Counter(r.source for r in rankings)),
        annotators=dict(Counter(r.annotator for r in rankings)),
        pairs=sum(pairs_by_source.values()),
        questions_multiply_ranked=sum(1 for g in by_question.values() if len(g) >= 2),
        annotator_pairs_compared=comparisons,
        mean_kendall_tau=sum(taus) / len(taus) if taus else None,
        pair_agreement_rate=agree / compared if compared else None,
        pairs_by_source={source: n for source, n in sorted(pairs_by_source.items()) if n},
        end_user=end_user,
    )


def end_user_stats(store: TrajectoryStore, rankings: dict[str, list[Ranking]]) -> EndUserStats:
    """Counts of end users' votes and pairs, and how often their pairs agree with annotators'
    (human) rankings of the same question: each (end-user pair, ranking ordering both) counts once."""
    votes = store.end_user_feedback()
    by_question: dict[str, list[EndUserFeedback]] = defaultdict(list)
    for vote in votes:
        by_question[vote.question_id].append(vote)
    stats = EndUserStats(
        votes=len(votes), by_kind=dict(Counter(v.kind for v in votes)),
        up=sum(1 for v in votes if v.score and v.score > 0), down=sum(1 for v in votes if v.score and v.score < 0),
        neutral=sum(1 for v in votes if v.kind != "choice" and v.score == 0),
        end_users=len({(v.app, v.end_user) for v in votes}),
    )
    agree = 0
    for question_id, question_votes in by_question.items():
        known = set(store.trajectory_ids(question_id))
        human = [set(ranked_id_pairs(r.order)) for r in rankings.get(question_id, ()) if r.source == "human"]
        for app_votes in by_app(question_votes).values():  # counted per app, as the export does
            for label in trajectory_labels(app_votes).values():
                if label.trajectory_id in known:
                    stats.trajectories_desirable += label.label is True
                    stats.trajectories_undesirable += label.label is False
                    stats.trajectories_tied += label.label is None
            for chosen, rejected, signal, _ids in vote_id_pairs(app_votes, known):
                if signal == "choice":
                    stats.pairs_from_choices += 1
                else:
                    stats.pairs_from_thumbs += 1
                for ordered in human:
                    if (chosen, rejected) in ordered or (rejected, chosen) in ordered:  # ties say nothing
                        stats.annotator_pairs_compared += 1
                        agree += (chosen, rejected) in ordered
    if stats.annotator_pairs_compared:
        stats.annotator_agreement_rate = agree / stats.annotator_pairs_compared
    return stats
