"""Export what annotators and end users said.

`pairs`: every ranking becomes all its ordered (chosen, rejected) pairs (C(K,2) without
ties; tied trajectories give none), and end users' choices and thumbs their pairs
(`end_user_data`), grouped by question, each pair carrying both whole trajectories so trainers
can mask prompts and observations, and its `source`. `trl`: the same pairs as
`{prompt, chosen, rejected}` text. `kto`: end users' thumbs and scores as an unpaired
`{prompt, completion, label}` set (TRL's KTOTrainer). `rankings`: the raw rankings as stored;
`feedback`: the raw end-user votes.

`source` picks who: `annotator` (people ranking on the page: stored as `human`), `simulated`,
`ranked` (both: the default of pairs, trl and rankings), `end-user`, or `all`. End users' votes
reach training data only when asked for (`end-user` or `all`): an ingest token is the most
widely deployed credential, and nothing it writes should become `chosen` text by default.
Votes of the apps named in `exclude_apps`, and of every revoked app unless `include_revoked`,
are left out; every end-user pair and KTO row names its `app`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
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
ExportSource = Literal["ranked", "all", "annotator", "simulated", "end-user"]
SOURCES: tuple[str, ...] = ("ranked", "all", "annotator", "simulated", "end-user")
RANKED = "ranked"  # annotators' and the simulated annotator's rankings: no end users' votes
# A ranking's stored source for each `source` choice (None: every ranking).
_RANKING_SOURCE = {"annotator": "human", "simulated": "simulated"}


def default_source(fmt: str) -> str:
    """The source a format exports when none is given: rankings for pairs, trl and rankings;
    end users' votes for kto and feedback, which hold nothing else."""
    return END_USER if fmt in ("kto", "feedback") else RANKED


def preference_pairs(store: TrajectoryStore, *, source: str | None = RANKED, exclude_apps: Iterable[str] = (),
                     include_revoked: bool = False) -> Iterator[PreferencePair]:
    """All pairs from the chosen source(s), question by question (pairs of one question are
    adjacent): rankings' pairs first, then end users'. `source` also takes a ranking's stored
    source (`human`); by default only rankings (`ranked`)."""
    source = "annotator" if source == "human" else source or RANKED
    _check_source(source)
    by_question: dict[str, list[Ranking]] = defaultdict(list)
    if source != END_USER:
        for ranking in store.rankings(source=_RANKING_SOURCE.get(source)):
            by_question[ranking.question_id].append(ranking)
    votes = (_votes_by_question(store, excluded_apps(store, exclude_apps, include_revoked))
             if source in ("all", END_USER) else {})
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


def excluded_apps(store: TrajectoryStore, named: Iterable[str] = (), include_revoked: bool = False) -> set[str]:
    """The apps whose votes an export leaves out: those named, and every revoked account."""
    excluded = set(named)
    if not include_revoked:
        excluded |= {account.name for account in store.accounts() if account.revoked}
    return excluded


def _votes_by_question(store: TrajectoryStore, exclude_apps: set[str]) -> dict[str, list[EndUserFeedback]]:
    votes: dict[str, list[EndUserFeedback]] = defaultdict(list)
    for vote in store.end_user_feedback(exclude_apps=exclude_apps):
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


def check_export(fmt: str, source: str | None) -> None:
    """ExportError for a source a format cannot take (checked before anything is written)."""
    source = source or default_source(fmt)
    _check_source(source)
    if fmt in ("kto", "feedback") and source not in ("all", END_USER):
        raise ExportError(f"--format {fmt} holds end users' votes only: use --source end-user or all")


def export_lines(store: TrajectoryStore, fmt: str, source: str | None = None, *, exclude_apps: Iterable[str] = (),
                 include_revoked: bool = False) -> Iterator[str]:
    """One JSON document per line, in the given format, from the given source(s) (default:
    `default_source(fmt)`), without the votes of `exclude_apps` and of revoked apps."""
    source = source or default_source(fmt)
    check_export(fmt, source)
    excluded = excluded_apps(store, exclude_apps, include_revoked)
    if fmt == "pairs":
        for pair in preference_pairs(store, source=source, exclude_apps=excluded, include_revoked=True):
            yield pair.model_dump_json()
    elif fmt == "trl":
        for pair in preference_pairs(store, source=source, exclude_apps=excluded, include_revoked=True):
            yield to_text_pair(pair).model_dump_json()
    elif fmt == "kto":
        for question_id, votes in _votes_by_question(store, excluded).items():
            trajectories = {t.id: t for t in store.list(question_id)}
            for row in kto_rows(votes, trajectories):
                yield row.model_dump_json()
    elif fmt == "rankings":
        if source not in (END_USER,):
            for ranking in store.rankings(source=_RANKING_SOURCE.get(source)):
                yield ranking.model_dump_json()
    elif fmt == "feedback":
        for vote in store.end_user_feedback(exclude_apps=excluded):
            yield vote.model_dump_json()
    else:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_export(store: TrajectoryStore, fmt: str, out: str | Path, source: str | None = None, *,
                 exclude_apps: Iterable[str] = (), include_revoked: bool = False) -> int:
    """Write the export as JSON Lines; returns the number of lines. The file is written to a
    temporary name first, so a failed export never leaves half a file under the real name."""
    check_export(fmt, source)  # before the file is touched
    return write_lines(out, export_lines(store, fmt, source, exclude_apps=exclude_apps,
                                         include_revoked=include_revoked))
