"""Leases of the trajectory store: which question an annotator is handed next. A question is
leased to one annotator at a time, so two people do not rank the same one at once while
others wait; a lease that runs out frees the question."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from rankact.alignment.feedback.store.database import Database
from rankact.alignment.feedback.store.tables import (
    LeaseRow,
    QuestionRow,
    RankingRow,
    trajectory_counts,
    utc_now,
)


class Leases:
    """Which question each annotator is handed next, in the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def next_question_id(self, annotator: str, lease_seconds: float = 600) -> str | None:
        """The id of a question this annotator has not ranked, with at least two trajectories,
        and not leased to anyone else right now; it is leased to them for `lease_seconds`.
        Asking again before the lease ends returns the same question (a page reload keeps its
        place)."""
        for _attempt in range(3):
            try:
                return self._lease_next(annotator, lease_seconds)
            except IntegrityError:  # another server took the same lease first (PostgreSQL)
                continue
        return None

    def _lease_next(self, annotator: str, lease_seconds: float) -> str | None:
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
                held.expires_at = expires
                return held.question_id
            busy = select(LeaseRow.question_id).where(LeaseRow.expires_at > now, LeaseRow.annotator != annotator)
            n_traj = trajectory_counts()
            n_rank = (select(RankingRow.question_id, func.count().label("n"))
                      .group_by(RankingRow.question_id).subquery())
            # Fewest rankings first, so every question gets one before any gets two.
            candidate = session.scalars(
                select(QuestionRow.id)
                .join(n_traj, n_traj.c.question_id == QuestionRow.id)
                .outerjoin(n_rank, n_rank.c.question_id == QuestionRow.id)
                .where(n_traj.c.n >= 2, QuestionRow.id.not_in(ranked), QuestionRow.id.not_in(busy))
                .order_by(func.coalesce(n_rank.c.n, 0), QuestionRow.created_at, QuestionRow.id)
                .limit(1)
            ).first()
            if candidate is None:
                return None
            session.execute(delete(LeaseRow).where(LeaseRow.question_id == candidate))
            session.add(LeaseRow(question_id=candidate, annotator=annotator, expires_at=expires))
            return candidate

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
