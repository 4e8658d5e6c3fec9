"""Leases of the trajectory store: which question an annotator is handed next. A question is
leased to one annotator at a time, so two people do not rank the same one at once while
others wait; a lease that runs out frees the question."""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from rankact.alignment.feedback.store.tables import _Lease, _now, _Question, _Ranking, _trajectory_counts

if TYPE_CHECKING:
    from rankact.alignment.feedback.store.trajectory_store import Question


class LeasesMixin:
    """The lease methods of `TrajectoryStore` (which provides `_read`, `_write` and `question`)."""

    def next_question_for(self, annotator: str, lease_seconds: float = 600) -> Question | None:
        """A question this annotator has not ranked, with at least two trajectories, and not
        leased to anyone else right now; it is leased to them for `lease_seconds`. Asking again
        before the lease ends returns the same question (a page reload keeps its place)."""
        for _attempt in range(3):
            try:
                chosen = self._lease_next(annotator, lease_seconds)
            except IntegrityError:  # another server took the same lease first (PostgreSQL)
                continue
            return self.question(chosen) if chosen else None
        return None

    def _lease_next(self, annotator: str, lease_seconds: float) -> str | None:
        now = _now()
        expires = now + timedelta(seconds=lease_seconds)
        with self._write() as session:
            ranked = select(_Ranking.question_id).where(_Ranking.annotator == annotator)
            held = session.scalars(
                select(_Lease).where(_Lease.annotator == annotator, _Lease.expires_at > now,
                                     _Lease.question_id.not_in(ranked))
                .order_by(_Lease.question_id)
            ).first()
            if held is not None:
                held.expires_at = expires
                return held.question_id
            busy = select(_Lease.question_id).where(_Lease.expires_at > now, _Lease.annotator != annotator)
            n_traj = _trajectory_counts()
            n_rank = (select(_Ranking.question_id, func.count().label("n"))
                      .group_by(_Ranking.question_id).subquery())
            # Fewest rankings first, so every question gets one before any gets two.
            candidate = session.scalars(
                select(_Question.id)
                .join(n_traj, n_traj.c.question_id == _Question.id)
                .outerjoin(n_rank, n_rank.c.question_id == _Question.id)
                .where(n_traj.c.n >= 2, _Question.id.not_in(ranked), _Question.id.not_in(busy))
                .order_by(func.coalesce(n_rank.c.n, 0), _Question.created_at, _Question.id)
                .limit(1)
            ).first()
            if candidate is None:
                return None
            session.execute(delete(_Lease).where(_Lease.question_id == candidate))
            session.add(_Lease(question_id=candidate, annotator=annotator, expires_at=expires))
            return candidate

    def unranked_count(self, annotator: str) -> int:
        """Questions with two or more trajectories this annotator has not ranked, leased or not:
        when `next_question_for` returns None but this is > 0, others hold the rest right now."""
        n_traj = _trajectory_counts()
        ranked = select(_Ranking.question_id).where(_Ranking.annotator == annotator)
        query = select(func.count()).select_from(n_traj).where(n_traj.c.n >= 2, n_traj.c.question_id.not_in(ranked))
        with self._read() as session:
            return session.scalar(query) or 0

    def release(self, question_id: str, annotator: str) -> None:
        with self._write() as session:
            session.execute(delete(_Lease).where(_Lease.question_id == question_id, _Lease.annotator == annotator))
