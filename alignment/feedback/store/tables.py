"""The store's SQL tables, one class per table, and the small queries several table groups
share. Every part of the store (`accounts`, `leases`, `rankings`, `end_user_votes`,
`trajectory_store`) reads and writes these; `migrations` changes them between schema versions.
The engine and sessions are in `database`."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql import ColumnElement, Subquery
from sqlalchemy.types import TypeDecorator

from rankact.alignment.errors import UnstorableValueError
from rankact.alignment.feedback.records.timestamps import EARLIEST, LATEST_READABLE, checked_utc

log = logging.getLogger("rankact.store")

SCHEMA_VERSION = 4


# --- tables -----------------------------------------------------------------------------


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            # In UTC: SQLite keeps the wall time without its zone, so +05:00 would read back 5 h off.
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """The declarative base of every table of the store."""


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class QuestionRow(Base):
    __tablename__ = "questions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    gold: Mapped[list] = mapped_column(JSON, default=list)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrajectoryRow(Base):
    __tablename__ = "trajectories"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    question: Mapped[str] = mapped_column(Text)
    # Long text is indexed by its hash, never by value: PostgreSQL refuses a btree row over
    # 2,704 bytes, so an index on the text itself made a long question unstorable.
    question_sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    model: Mapped[str] = mapped_column(String(512), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    data: Mapped[str] = mapped_column(Text)
    # A row whose data no longer reads back as a Trajectory (written before strict input, or
    # edited by hand). Kept, never deleted, but left out of every list, count and ranking.
    damaged: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class RankingRow(Base):
    __tablename__ = "rankings"
    __table_args__ = (UniqueConstraint("question_id", "annotator", name="uq_ranking_question_annotator"),)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    order: Mapped[list] = mapped_column("order_json", JSON)
    flags: Mapped[list] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), index=True)


class AnnotatorRow(Base):
    # Every account, whatever its role (the table keeps its first name so old databases migrate in place).
    __tablename__ = "annotators"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)


class LeaseRow(Base):
    # One lease per question: while it runs, nobody else is sent that question.
    __tablename__ = "leases"
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When this annotator's hold began; renewals past the cap let a waiting annotator take it over.
    since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)


class EndUserFeedbackRow(Base):
    # An application's end user's vote: a score on one trajectory (thumbs are +1/-1) or a choice
    # between two of one question. `slot` is one per (app, end user, what was judged): a later
    # vote of the same user replaces the earlier one (alignment.feedback.records.end_user).
    # `id` is the row's key, unique per app: the app's `feedback_id` (or the derived one) is
    # `feedback_id`, so one app can never claim an id another app uses.
    __tablename__ = "end_user_feedback"
    __table_args__ = (UniqueConstraint("app", "feedback_id", name="uq_end_user_feedback_app_id"),)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    feedback_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    slot: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    trajectory_id: Mapped[str] = mapped_column(String(128), index=True)  # scored, or chosen
    rejected_id: Mapped[str | None] = mapped_column(String(128), nullable=True, default=None)
    score: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    app: Mapped[str] = mapped_column(String(128), index=True)
    end_user: Mapped[str] = mapped_column(String(128), index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- queries used in several places ---------------------------------------------------


def readable_rows(rows: list, convert: Callable[[Any], Any], what: str) -> list:
    """Each row converted; a row that does not convert (damaged JSON, a field out of range) is
    left out with a warning, so one bad row never hides the rest."""
    found = []
    for row in rows:
        try:
            found.append(convert(row))
        except (ValueError, TypeError) as exc:
            log.warning("%s %s is damaged and left out: %s", what, row.id, str(exc).splitlines()[0])
    return found


def readable_time(column) -> ColumnElement[bool]:
    """Rows whose timestamp every driver reads back (one stored before timestamps were checked,
    e.g. in 1 BC on PostgreSQL, fails the whole read in the driver, so it is filtered in SQL)."""
    return column.between(EARLIEST, LATEST_READABLE)


def warn_unreadable_times(session: Session, column, what: str) -> None:
    """Log how many rows `readable_time(column)` leaves out, if any."""
    n = session.scalar(select(func.count()).where(~readable_time(column)))
    if n:
        log.warning("%d %s row(s) have a timestamp outside %s..%s and are left out of every read", n, what,
                    f"{EARLIEST:%Y-%m-%d}", f"{LATEST_READABLE:%Y-%m-%d}")


def storable_time(moment: datetime, what: str) -> datetime:
    """`moment` in UTC, or UnstorableValueError when it lies outside what every database of
    ours stores and reads back (`records.timestamps`)."""
    try:
        return checked_utc(moment, what)
    except ValueError as exc:
        raise UnstorableValueError(str(exc)) from None


def question_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trajectory_counts() -> Subquery:
    """Readable trajectories per question, as a subquery (question_id, n)."""
    return (select(TrajectoryRow.question_id, func.count().label("n")).where(TrajectoryRow.damaged.is_(False))
            .group_by(TrajectoryRow.question_id).subquery())


def trajectory_ids(session: Session, question_id: str) -> list[str]:
    """The readable trajectories of a question, sorted."""
    return sorted(session.scalars(select(TrajectoryRow.id).where(TrajectoryRow.question_id == question_id,
                                                                 TrajectoryRow.damaged.is_(False))))


def utc_now() -> datetime:
    return datetime.now(UTC)
