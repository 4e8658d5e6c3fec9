"""Rankings in the trajectory store: kept raw (who, when, the order with ties, flags and a
comment), one per (question, annotator). A ranking must order exactly the question's readable
trajectories; that is checked inside the write transaction, so none can be added in between."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rankact.alignment.errors import ConflictError, InvalidRankingError, NotFoundError
from rankact.alignment.feedback.records.rankings import Ranking, StepFlag
from rankact.alignment.feedback.store.database import Database
from rankact.alignment.feedback.store.tables import (
    LeaseRow,
    QuestionRow,
    RankingRow,
    readable_rows,
    readable_time,
    storable_time,
    trajectory_ids,
    warn_unreadable_times,
)


class Rankings:
    """Rankings, checked against the question's trajectories, in the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        expected = set(trajectory_ids(session, ranking.question_id))
        if not expected and session.get(QuestionRow, ranking.question_id) is None:
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
        created_at = storable_time(ranking.created_at, "the ranking's created_at")
        with self.db.write() as session:
            self._check_ranking(session, ranking)
            row = session.scalars(
                select(RankingRow).where(RankingRow.question_id == ranking.question_id,
                                       RankingRow.annotator == ranking.annotator)
            ).first()
            created = row is None
            if row is None:
                row = RankingRow(id=ranking.id, question_id=ranking.question_id, annotator=ranking.annotator,
                               created_at=created_at, order=ranking.order, flags=flags,
                               comment=ranking.comment, source=ranking.source)
                session.add(row)
            elif (row.order, row.flags, row.comment, row.source) != (ranking.order, flags, ranking.comment,
                                                                     ranking.source):
                row.order, row.flags, row.comment, row.source = ranking.order, flags, ranking.comment, ranking.source
                row.created_at = created_at
            session.execute(delete(LeaseRow).where(LeaseRow.question_id == ranking.question_id,
                                                 LeaseRow.annotator == ranking.annotator))
            session.flush()
            return _to_ranking(row), created

    def rankings(
        self, question_id: str | None = None, *, annotator: str | None = None, source: str | None = None,
    ) -> list[Ranking]:
        query = (select(RankingRow).where(readable_time(RankingRow.created_at))
                 .order_by(RankingRow.question_id, RankingRow.created_at, RankingRow.id))
        if question_id is not None:
            query = query.where(RankingRow.question_id == question_id)
        if annotator is not None:
            query = query.where(RankingRow.annotator == annotator)
        if source is not None:
            query = query.where(RankingRow.source == source)
        with self.db.read() as session:
            rows = list(session.scalars(query))
            warn_unreadable_times(session, RankingRow.created_at, "ranking")
        return readable_rows(rows, _to_ranking, "ranking")


def _to_ranking(row: RankingRow) -> Ranking:
    return Ranking(
        id=row.id, question_id=row.question_id, annotator=row.annotator, order=row.order,
        source=row.source, created_at=row.created_at, flags=[StepFlag(**f) for f in row.flags or []],
        comment=row.comment or "",
    )
