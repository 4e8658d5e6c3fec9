"""Export what annotators said.

`pairs`: every ranking becomes all its ordered (chosen, rejected) pairs (C(K,2) without
ties; tied trajectories give none), grouped by question, each pair carrying both whole
trajectories so trainers can mask prompts and observations. `trl`: the same pairs as
`{prompt, chosen, rejected}` text. `rankings`: the raw rankings as stored.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from agent.trajectory import Trajectory
from alignment.feedback.pairs import PreferencePair, pairs_from_ranking, to_text_pair
from alignment.feedback.rankings import Ranking
from alignment.feedback.store import TrajectoryStore
from alignment.output_file import write_lines

ExportFormat = Literal["pairs", "trl", "rankings"]
FORMATS: tuple[str, ...] = ("pairs", "trl", "rankings")


def preference_pairs(store: TrajectoryStore, *, source: str | None = None) -> Iterator[PreferencePair]:
    """All pairs from all rankings, question by question (pairs of one question are adjacent)."""
    by_question: dict[str, list[Ranking]] = defaultdict(list)
    for ranking in store.rankings(source=source):
        by_question[ranking.question_id].append(ranking)
    for question in store.questions():
        rankings = by_question.get(question.id)
        if not rankings:
            continue
        trajectories: dict[str, Trajectory] = {t.id: t for t in store.list(question.id)}
        for ranking in rankings:
            known = _restrict(ranking, trajectories)  # a trajectory deleted since ranking is skipped
            yield from pairs_from_ranking(known, trajectories, question.text)


def _restrict(ranking: Ranking, known: dict[str, Trajectory]) -> Ranking:
    order = [[tid for tid in group if tid in known] for group in ranking.order]
    order = [group for group in order if group]
    if order == ranking.order or not order:
        return ranking
    return ranking.model_copy(update={"order": order})


def export_lines(store: TrajectoryStore, fmt: str) -> Iterator[str]:
    """One JSON document per line, in the given format."""
    if fmt == "pairs":
        for pair in preference_pairs(store):
            yield pair.model_dump_json()
    elif fmt == "trl":
        for pair in preference_pairs(store):
            yield to_text_pair(pair).model_dump_json()
    elif fmt == "rankings":
        for ranking in store.rankings():
            yield ranking.model_dump_json()
    else:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_export(store: TrajectoryStore, fmt: str, out: str | Path) -> int:
    """Write the export as JSON Lines; returns the number of lines. The file is written to a
    temporary name first, so a failed export never leaves half a file under the real name."""
    if fmt not in FORMATS:  # before the file is touched
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return write_lines(out, export_lines(store, fmt))


# --- agreement --------------------------------------------------------------------------


