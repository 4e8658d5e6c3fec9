"""Rankings in the trajectory store: kept raw (who, when, the order with ties, flags and a
comment), one per (question, annotator). A ranking must order exactly the question's readable
trajectories; that is checked inside the write transaction, so none can be added in between."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rankact.alignment.errors import ConflictError, InvalidRankingError, NotFoundError
from rankact.alignment.feedback.preferences.rankings import Ranking, StepFlag
from rankact.alignment.feedback.store.tables import _Lease, _Question, _Ranking, _Trajectory, readable_rows


class RankingsMixin:
    """The ranking methods of `TrajectoryStore` (which provides `_read` and `_write`)."""

    def submit_ranking(self, ranking: Ranking) -> tuple[Ranking, bool]:
        """Store a ranking. It must order exactly its question's trajectories (ties allowed).
        One ranking per (question, annotator): repeating a submission changes nothing, a new
        order from the same annotator replaces their old one. Returns (stored, created)."""
        for _attempt in range(3):
            try:
                return self._upsert_ranking(ranking)
            except IntegrityError:  # a concurrent first submission won the unique key; retry as update
                continue
        raise ConflictError("could not store the ranking: too many concurrent submissions")

    def _check_ranking(self, session: Session, ranking: Ranking) -> None:
        # Checked inside the write transaction, so no trajectory can be added in between.
        expected = set(_trajectory_ids(session, ranking.question_id))
        if not expected and session.get(_Question, ranking.question_id) is None:
            raise NotFoundError(f"no question with id {ranking.question_id!r}")
        given = ranking.trajectory_ids
        missing = sorted(expected - set(given))
        unknown = sorted(set(given) - expected)
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unknown:
                parts.append(f"not trajectories of this question: {', '.join(unknown)}")
            raise InvalidRankingError(
                f"a ranking must order exactly the {len(expected)} trajectories of question "
                f"{ranking.question_id} ({'; '.join(parts)})"
            )
        for flag in ranking.flags:
            if flag.trajectory_id not in expected:
                raise InvalidRankingError(f"flag names trajectory {flag.trajectory_id}, not one of this question")

    def _upsert_ranking(self, ranking: Ranking) -> tuple[Ranking, bool]:
        flags = [f.model_dump() for f in ranking.flags]
        with self._write() as session:
            self._check_ranking(session, ranking)
            row = session.scalars(
                select(_Ranking).where(_Ranking.question_id == ranking.question_id,
                                       _Ranking.annotator == ranking.annotator)
            ).first()
            created = row is None
            if row is None:
                row = _Ranking(id=ranking.id, question_id=ranking.question_id, annotator=ranking.annotator,
                               created_at=ranking.created_at, order=ranking.order, flags=flags,
                               comment=ranking.comment, source=ranking.source)
                session.add(row)
            elif (row.order, row.flags, row.comment, row.source) != (ranking.order, flags, ranking.comment,
                                                                     ranking.source):
                row.order, row.flags, row.comment, row.source = ranking.order, flags, ranking.comment, ranking.source
                row.created_at = ranking.created_at
            session.execute(delete(_Lease).where(_Lease.question_id == ranking.question_id,
                                                 _Lease.annotator == ranking.annotator))
            session.flush()
            return _to_ranking(row), created

    def rankings(
        self, question_id: str | None = None, *, annotator: str | None = None, source: str | None = None,
    ) -> list[Ranking]:
        query = select(_Ranking).order_by(_Ranking.question_id, _Ranking.created_at, _Ranking.id)
        if question_id is not None:
            query = query.where(_Ranking.question_id == question_id)
        if annotator is not None:
            query = query.where(_Ranking.annotator == annotator)
        if source is not None:
            query = query.where(_Ranking.source == source)
        with self._read() as session:
            rows = list(session.scalars(query))
        return readable_rows(rows, _to_ranking, "ranking")


def _trajectory_ids(session: Session, question_id: str) -> list[str]:
    return sorted(session.scalars(select(_Trajectory.id).where(_Trajectory.question_id == question_id,
                                                               _Trajectory.damaged.is_(False))))


def _to_ranking(row: _Ranking) -> Ranking:
    return Ranking(
        id=row.id, question_id=row.question_id, annotator=row.annotator, order=row.order,
        source=row.source, created_at=row.created_at, flags=[StepFlag(**f) for f in row.flags or []],
        comment=row.comment or "",
    )
