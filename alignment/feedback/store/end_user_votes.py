"""End users' votes in the trajectory store (the rules are in `rankact.alignment.feedback.records.end_user`):
one row per (app, end user, thing judged), found again by the vote's id so a re-sent vote is
answered "duplicate", replaced by a newer vote of the same user, never counted twice.

Vote ids are per app: the row's key is derived from (app, feedback id), so one app cannot
claim an id, or the predictable derived id, of another app's vote. Which of two votes of one
user is newer is decided by when each was *received*, capped by when the client says it was
cast (`_moment`): a late re-send of an old vote stays older, and a vote dated ahead cannot
outrank a change the user made after it arrived."""
from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rankact.alignment.errors import ConflictError, InvalidFeedbackError, NotFoundError
from rankact.alignment.feedback.records.end_user import EndUserFeedback, FeedbackIn, FeedbackStatus
from rankact.alignment.feedback.store.database import Database
from rankact.alignment.feedback.store.tables import (
    EndUserFeedbackRow,
    TrajectoryRow,
    readable_rows,
    readable_time,
    storable_time,
    utc_now,
    warn_unreadable_times,
)


class EndUserVotes:
    """End users' votes, in the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_feedback(self, vote: FeedbackIn, *, app: str) -> tuple[EndUserFeedback, FeedbackStatus, str | None]:
        """Store one end user's vote relayed by account `app`. Returns (the vote now in its slot,
        status, the id of the vote it replaced). NotFoundError for an unknown trajectory,
        InvalidFeedbackError for a choice across questions, ConflictError for a feedback id
        already used by another vote."""
        for _attempt in range(3):
            try:
                return self._upsert_feedback(vote, app)
            except IntegrityError:  # a concurrent vote took the slot first: go again, now as a replacement
                continue
        raise ConflictError("could not store the vote: too many concurrent votes of this user")

    def _upsert_feedback(self, vote: FeedbackIn, app: str):
        feedback_id, slot = vote.feedback_id or vote.derived_id(app), vote.slot(app)
        received = utc_now()
        created = storable_time(vote.created_at, "the vote's created_at") if vote.created_at else received
        with self.db.write() as session:
            question_id = _question_of(session, vote)
            new = EndUserFeedbackRow(
                id=row_key(app, feedback_id), feedback_id=feedback_id, slot=slot, kind=vote.kind,
                question_id=question_id, trajectory_id=vote.trajectory_id or vote.chosen_id,
                rejected_id=vote.rejected_id, score=vote.value, app=app, end_user=vote.end_user,
                comment=vote.comment, created_at=created, received_at=received,
            )
            same_id = session.scalars(select(EndUserFeedbackRow).where(
                EndUserFeedbackRow.app == app, EndUserFeedbackRow.feedback_id == feedback_id)).first()
            if same_id is not None:
                if _content(same_id) != _content(new):
                    raise ConflictError(f"feedback id {feedback_id!r} is already used by another vote")
                return _to_feedback(same_id), "duplicate", None
            held = session.scalars(select(EndUserFeedbackRow).where(EndUserFeedbackRow.slot == slot)).first()
            if held is not None:
                if _content(held) == _content(new):
                    return _to_feedback(held), "duplicate", None
                if _moment(held) > _moment(new):  # a late re-send of an older vote
                    return _to_feedback(held), "superseded", None
                session.execute(delete(EndUserFeedbackRow).where(EndUserFeedbackRow.id == held.id))
                session.flush()
            session.add(new)
            session.flush()
            replaced = (held.feedback_id or held.id) if held is not None else None
            return _to_feedback(new), "replaced" if held is not None else "created", replaced

    def end_user_feedback(
        self, question_id: str | None = None, *, end_user: str | None = None, kind: str | None = None,
        limit: int | None = None, offset: int = 0, exclude_apps: Collection[str] = (),
    ) -> list[EndUserFeedback]:
        """Stored votes, oldest first, leaving out those relayed by `exclude_apps`; a row that
        does not read back is left out with a warning."""
        query = (select(EndUserFeedbackRow)
                 .where(readable_time(EndUserFeedbackRow.created_at), readable_time(EndUserFeedbackRow.received_at))
                 .order_by(EndUserFeedbackRow.question_id, EndUserFeedbackRow.created_at, EndUserFeedbackRow.id))
        for column, value in ((EndUserFeedbackRow.question_id, question_id), (EndUserFeedbackRow.end_user, end_user),
                              (EndUserFeedbackRow.kind, kind)):
            if value is not None:
                query = query.where(column == value)
        if exclude_apps:
            query = query.where(EndUserFeedbackRow.app.not_in(sorted(exclude_apps)))
        query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as session:
            rows = list(session.scalars(query))
            warn_unreadable_times(session, EndUserFeedbackRow.created_at, "end-user feedback")
        return readable_rows(rows, _to_feedback, "end-user feedback")

    def drop_app_votes(self, app: str) -> int:
        """Delete every vote relayed by `app` (a revoked app's data); returns how many."""
        with self.db.write() as session:
            return session.execute(delete(EndUserFeedbackRow).where(EndUserFeedbackRow.app == app)).rowcount or 0


def row_key(app: str, feedback_id: str) -> str:
    """The row's key: unique per (app, feedback id), whatever another app sends."""
    return "v-" + hashlib.sha256(f"{app}\0{feedback_id}".encode()).hexdigest()[:40]


def _moment(row: EndUserFeedbackRow) -> datetime:
    """When a vote counts as cast: the client's claim, but never after the server received it."""
    return min(_aware(row.created_at), _aware(row.received_at))


def _question_of(session: Session, vote: FeedbackIn) -> str:
    """The question the judged trajectories belong to (both of a choice: the same one)."""
    ids = [vote.trajectory_id] if vote.trajectory_id else [vote.chosen_id, vote.rejected_id]
    questions = []
    for trajectory_id in ids:
        row = session.get(TrajectoryRow, trajectory_id)
        if row is None:
            raise NotFoundError(f"no trajectory with id {trajectory_id!r} (post the trajectory before votes on it)")
        if row.damaged:
            raise InvalidFeedbackError(f"trajectory {trajectory_id!r} is damaged (unreadable) and takes no votes")
        questions.append(row.question_id)
    if len(set(questions)) > 1:
        # Which questions they are is not said: the sender (an app's ingest token) may not read questions.
        raise InvalidFeedbackError(f"a choice is between two trajectories of the same question; {ids[0]!r} and "
                                   f"{ids[1]!r} answer different questions")
    return questions[0]


def _content(row: EndUserFeedbackRow) -> tuple:
    return (row.slot, row.kind, row.trajectory_id, row.rejected_id, row.score, row.comment)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _to_feedback(row: EndUserFeedbackRow) -> EndUserFeedback:
    choice = row.kind == "choice"
    return EndUserFeedback(
        id=row.feedback_id or row.id, kind=row.kind, question_id=row.question_id,
        trajectory_id=None if choice else row.trajectory_id, score=row.score,
        chosen_id=row.trajectory_id if choice else None, rejected_id=row.rejected_id if choice else None,
        app=row.app, end_user=row.end_user, comment=row.comment or "", created_at=row.created_at,
        received_at=row.received_at,
    )
