"""Leases of the trajectory store: which question an annotator is handed next. A question is
leased to one annotator at a time, so two people do not rank the same one at once while
others wait; a lease that runs out frees the question."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from rankact.alignment.errors import StoreError
from rankact.alignment.feedback.store.database import Database
from rankact.alignment.feedback.store.tables import (
    LeaseRow,
    QuestionRow,
    RankingRow,
    trajectory_counts,
    utc_now,
)

# A lease renewed by reloads is capped at this many lease lengths once someone else is waiting.
MAX_HOLD_LEASES = 3
ATTEMPTS = 8
log = logging.getLogger("rankact.store")


class _LostRace(StoreError):
    """Another server changed the lease between our read and our write; caught here, the
    lease is tried again (never reaches a caller)."""


class Leases:
    """Which question each annotator is handed next, in the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def next_question_id(self, annotator: str, lease_seconds: float = 600,
                         max_hold_seconds: float | None = None) -> str | None:
        """The id of a question this annotator has not ranked, with at least two trajectories,
        and not leased to anyone else right now; it is leased to them for `lease_seconds`.
        Asking again before the lease ends returns the same question (a page reload keeps its
        place). Reloads renew a lease for `max_hold_seconds` in all (default: MAX_HOLD_LEASES
        leases); past that, an annotator who finds nothing free takes the question over.

        Race-free under READ COMMITTED: a lease is taken by an INSERT on the question's primary
        key after deleting only an *expired* lease, so of two servers that pick the same free
        question one insert fails on the key and that server picks again; a takeover is an
        UPDATE that names the holder it replaces, so only one of two takeovers matches."""
        max_hold = max_hold_seconds if max_hold_seconds is not None else MAX_HOLD_LEASES * lease_seconds
        for _attempt in range(ATTEMPTS):
            try:
                return self._lease_next(annotator, lease_seconds, max_hold)
            except (IntegrityError, _LostRace):  # another server took the same question first
                continue
        return None

    def _lease_next(self, annotator: str, lease_seconds: float, max_hold: float) -> str | None:
        now = utc_now()
        expires = now + timedelta(seconds=lease_seconds)
        with self.db.write() as session:
            ranked = select(RankingRow.question_id).where(RankingRow.annotator == annotator)
            held = session.scalars(
                select(LeaseRow).where(LeaseRow.annotator == annotator, LeaseRow.expires_at > now,
                                     LeaseRow.question_id.not_in(ranked))
                .order_by(LeaseRow.question_id)
            ).first()
            if held is not None:
                held.expires_at = expires  # a reload renews; a waiting annotator may take it past the cap
                held.since = held.since or now
                return held.question_id
            busy = select(LeaseRow.question_id).where(LeaseRow.expires_at > now, LeaseRow.annotator != annotator)
            candidate = session.scalars(
                self._open_questions(ranked).where(QuestionRow.id.not_in(busy)).limit(1)
            ).first()
            if candidate is not None:
                # Only an expired lease (or this annotator's own) is cleared: a live one of another
                # annotator stays, and the insert below then fails on the key.
                session.execute(delete(LeaseRow).where(
                    LeaseRow.question_id == candidate,
                    or_(LeaseRow.expires_at <= now, LeaseRow.annotator == annotator)))
                session.add(LeaseRow(question_id=candidate, annotator=annotator, expires_at=expires, since=now))
                session.flush()
                return candidate
            return self._take_over(session, annotator, ranked, now, expires, max_hold)

    def _open_questions(self, ranked):
        n_traj = trajectory_counts()
        n_rank = (select(RankingRow.question_id, func.count().label("n"))
                  .group_by(RankingRow.question_id).subquery())
        # Fewest rankings first, so every question gets one before any gets two.
        return (select(QuestionRow.id)
                .join(n_traj, n_traj.c.question_id == QuestionRow.id)
                .outerjoin(n_rank, n_rank.c.question_id == QuestionRow.id)
                .where(n_traj.c.n >= 2, QuestionRow.id.not_in(ranked))
                .order_by(func.coalesce(n_rank.c.n, 0), QuestionRow.created_at, QuestionRow.id))

    @staticmethod
    def _take_over(session, annotator: str, ranked, now, expires, max_hold: float) -> str | None:
        """Nothing is free: take over the lease held longest past the renewal cap, if any, so
        one annotator reloading a page cannot keep a question from everyone who waits."""
        cutoff = now - timedelta(seconds=max_hold)
        stale = session.scalars(
            select(LeaseRow).where(LeaseRow.expires_at > now, LeaseRow.annotator != annotator,
                                   LeaseRow.since.is_not(None), LeaseRow.since <= cutoff,
                                   LeaseRow.question_id.not_in(ranked))
            .order_by(LeaseRow.since, LeaseRow.question_id).limit(1)
        ).first()
        if stale is None:
            return None
        question_id, holder = stale.question_id, stale.annotator
        session.expunge(stale)
        taken = session.execute(
            update(LeaseRow).where(LeaseRow.question_id == question_id, LeaseRow.annotator == holder,
                                   LeaseRow.since <= cutoff)
            .values(annotator=annotator, expires_at=expires, since=now)
        ).rowcount
        if not taken:  # another waiter took it over first
            raise _LostRace
        log.info("lease on %s passed from %s (held past %.0f s) to %s", question_id, holder, max_hold, annotator)
        return question_id

    def unranked_count(self, annotator: str) -> int:
        """Questions with two or more trajectories this annotator has not ranked, leased or not:
        when `next_question_for` returns None but this is > 0, others hold the rest right now."""
        n_traj = trajectory_counts()
        ranked = select(RankingRow.question_id).where(RankingRow.annotator == annotator)
        query = select(func.count()).select_from(n_traj).where(n_traj.c.n >= 2, n_traj.c.question_id.not_in(ranked))
        with self.db.read() as session:
            return session.scalar(query) or 0

    def release(self, question_id: str, annotator: str) -> None:
        with self.db.write() as session:
            session.execute(delete(LeaseRow).where(LeaseRow.question_id == question_id, LeaseRow.annotator == annotator))
