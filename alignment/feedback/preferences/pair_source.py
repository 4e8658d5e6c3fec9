"""Where a trainer's pairs come from: a pair file, or the rankings and votes in a trajectory
store (derived by `export.preference_pairs`). Its own module because it needs both `pairs`
(the file format) and `export` (the store's pairs), and `export` builds on `pairs`."""
from __future__ import annotations

from pathlib import Path

from rankact.agent.errors import RankactError
from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.export import preference_pairs
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair, read_pairs
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore


def load_pair_source(pairs: Path | None, db: str | None) -> list[PreferencePair | TextPair]:
    """The pairs a trainer reads: a pair file, or the rankings in a trajectory store."""
    if (pairs is None) == (db is None):
        raise RankactError("give exactly one of a pair file (--pairs) or a store URL (--db)")
    if pairs is not None:
        return read_pairs(pairs)
    with TrajectoryStore(db, create=False) as store:
        found = list(preference_pairs(store))
    if not found:
        raise NoTrainingSignal(f"no ranked pairs in {db}: rank some trajectories first")
    return found
