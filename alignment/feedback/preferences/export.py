"""Export what annotators and end users said.

`pairs`: every ranking becomes all its ordered (chosen, rejected) pairs (C(K,2) without
ties; tied trajectories give none), and end users' choices and thumbs their pairs
(`end_user_data`), grouped by question, each pair carrying both whole trajectories so trainers
can mask prompts and observations, and its `source`. `trl`: the same pairs as
`{prompt, chosen, rejected}` text. `kto`: end users' thumbs and scores as an unpaired
`{prompt, completion, label}` set (TRL's KTOTrainer). `rankings`: the raw rankings as stored;
`feedback`: the raw end-user votes.

`source` picks who: `annotator` (people ranking on the page: stored as `human`), `simulated`,
`end-user`, or `all`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import ExportError
from rankact.alignment.feedback.preferences.end_user_data import kto_rows, pairs_from_votes
from rankact.alignment.feedback.preferences.pairs import PreferencePair, pairs_from_ranking, to_text_pair
from rankact.alignment.feedback.records.end_user import END_USER, EndUserFeedback
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.output_file import write_lines

ExportFormat = Literal["pairs", "trl", "kto", "rankings", "feedback"]
FORMATS: tuple[str, ...] = ("pairs", "trl", "kto", "rankings", "feedback")
ExportSource = Literal["all", "annotator", "simulated", "end-user"]
SOURCES: tuple[str, ...] = ("all", "annotator", "simulated", "end-user")
# A ranking's stored source for each `source` choice.
_RANKING_SOURCE = {"annotator": "human", "simulated": "simulated"}


def preference_pairs(store: TrajectoryStore, *, source: str | None = "all") -> Iterator[PreferencePair]:
    """All pairs from the chosen source(s), question by question (pairs of one question are
    adjacent): rankings' pairs first, then end users'. `source` also takes a ranking's stored
    source (`human`)."""
    source = "annotator" if source == "human" else source or "all"
    _check_source(source)
    by_question: dict[str, list[Ranking]] = defaultdict(list)
    if source != END_USER:
        for ranking in store.rankings(source=_RANKING_SOURCE.get(source)):
            by_question[ranking.question_id].append(ranking)
    votes = _votes_by_question(store) if source in ("all", END_USER) else {}
    for question in store.questions():
        rankings, question_votes = by_question.get(question.id), votes.get(question.id)
        if not rankings and not question_votes:
            continue
        trajectories: dict[str, Trajectory] = {t.id: t for t in store.list(question.id)}
        for ranking in rankings or ():
            known = _restrict(ranking, trajectories)  # a trajectory deleted since ranking is skipped
            yield from pairs_from_ranking(known, trajectories, question.text)
        if question_votes:
            yield from pairs_from_votes(question_votes, trajectories, question.text)


def _votes_by_question(store: TrajectoryStore) -> dict[str, list[EndUserFeedback]]:
    votes: dict[str, list[EndUserFeedback]] = defaultdict(list)
    for vote in store.end_user_feedback():
        votes[vote.question_id].append(vote)
    return votes


def _restrict(ranking: Ranking, known: dict[str, Trajectory]) -> Ranking:
    order = [[tid for tid in group if tid in known] for group in ranking.order]
    order = [group for group in order if group]
    if order == ranking.order or not order:
        return ranking
    return ranking.model_copy(update={"order": order})


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ExportError(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")


def check_export(fmt: str, source: str) -> None:
    """ExportError for a source a format cannot take (checked before anything is written)."""
    _check_source(source)
    if fmt in ("kto", "feedback") and source not in ("all", END_USER):
        raise ExportError(f"--format {fmt} holds end users' votes only: use --source end-user or all")


def export_lines(store: TrajectoryStore, fmt: str, source: str = "all") -> Iterator[str]:
    """One JSON document per line, in the given format, from the given source(s)."""
    check_export(fmt, source)
    if fmt == "pairs":
        for pair in preference_pairs(store, source=source):
            yield pair.model_dump_json()
    elif fmt == "trl":
        for pair in preference_pairs(store, source=source):
            yield to_text_pair(pair).model_dump_json()
    elif fmt == "kto":
        for question_id, votes in _votes_by_question(store).items():
            trajectories = {t.id: t for t in store.list(question_id)}
            for row in kto_rows(votes, trajectories):
                yield row.model_dump_json()
    elif fmt == "rankings":
        if source != END_USER:
            for ranking in store.rankings(source=_RANKING_SOURCE.get(source)):
                yield ranking.model_dump_json()
    elif fmt == "feedback":
        for vote in store.end_user_feedback():
            yield vote.model_dump_json()
    else:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_export(store: TrajectoryStore, fmt: str, out: str | Path, source: str = "all") -> int:
    """Write the export as JSON Lines; returns the number of lines. The file is written to a
    temporary name first, so a failed export never leaves half a file under the real name."""
    check_export(fmt, source)  # before the file is touched
    return write_lines(out, export_lines(store, fmt, source))
