"""The store's database layer: SQL tables, and the engine with the SQLite
settings that make every acknowledged write durable (WAL, synchronous=FULL) and let
concurrent writers queue instead of failing (BEGIN IMMEDIATE, busy timeout), and the
migration of databases made by earlier schema versions.
`rankact.alignment.feedback.store.trajectory_store.TrajectoryStore` is the API on top."""
from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
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
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Subquery
from sqlalchemy.types import TypeDecorator

from rankact.alignment.errors import StoreError

log = logging.getLogger("rankact.store")

SCHEMA_VERSION = 3
DEFAULT_URL = "sqlite:///rankact.db"


# --- tables -----------------------------------------------------------------------------


class _UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class _Base(DeclarativeBase):
    pass


class _Meta(_Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class _Question(_Base):
    __tablename__ = "questions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    gold: Mapped[list] = mapped_column(JSON, default=list)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime)


class _Trajectory(_Base):
    __tablename__ = "trajectories"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    question: Mapped[str] = mapped_column(Text, index=True)
    model: Mapped[str] = mapped_column(String(512), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime, index=True)
    data: Mapped[str] = mapped_column(Text)
    # A row whose data no longer reads back as a Trajectory (written before strict input, or
    # edited by hand). Kept, never deleted, but left out of every list, count and ranking.
    damaged: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class _Ranking(_Base):
    __tablename__ = "rankings"
    __table_args__ = (UniqueConstraint("question_id", "annotator", name="uq_ranking_question_annotator"),)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime)
    order: Mapped[list] = mapped_column("order_json", JSON)
    flags: Mapped[list] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), index=True)


class _Annotator(_Base):
    # Every account, whatever its role (the table keeps its first name so old databases migrate in place).
    __tablename__ = "annotators"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(_UTCDateTime, nullable=True, default=None)


class _Lease(_Base):
    # One lease per question: while it runs, nobody else is sent that question.
    __tablename__ = "leases"
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(_UTCDateTime)


class _EndUserFeedback(_Base):
    # An application's end user's vote: a score on one trajectory (thumbs are +1/-1) or a choice
    # between two of one question. `slot` is one per (app, end user, what was judged): a later
    # vote of the same user replaces the earlier one (alignment.feedback.preferences.end_user).
    __tablename__ = "end_user_feedback"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    trajectory_id: Mapped[str] = mapped_column(String(128), index=True)  # scored, or chosen
    rejected_id: Mapped[str | None] = mapped_column(String(128), nullable=True, default=None)
    score: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    app: Mapped[str] = mapped_column(String(128))
    end_user: Mapped[str] = mapped_column(String(128), index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(_UTCDateTime)


# --- engine -----------------------------------------------------------------------------

# Set while a write transaction opens, so SQLite takes the write lock up front (BEGIN
# IMMEDIATE): two writers then queue on the busy timeout instead of one failing on upgrade.
_IMMEDIATE: contextvars.ContextVar[bool] = contextvars.ContextVar("rankact_store_immediate", default=False)


def normalize_url(url: str) -> str:
    """Accept a bare file path as shorthand for a SQLite URL."""
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r} (e.g. sqlite:///rankact.db)") from exc
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError, ModuleNotFoundError) as exc:
            raise StoreError(f"cannot open {url!r}: {exc}") from exc

    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    path = _sqlite_file(parsed)
    if path is None:
        kwargs["poolclass"] = StaticPool  # one shared in-memory database for all threads
    else:
        folder = path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, no permission, a read-only disk
            raise StoreError(f"cannot open database {url}: cannot create its folder {folder} "
                             f"({exc.strerror or exc})") from exc
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        if path is not None:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _IMMEDIATE.get() else "BEGIN")

    return engine


def _sqlite_file(parsed) -> Path | None:
    """The file of a SQLite URL, None for an in-memory database. A URI filename
    (`sqlite:///file:PATH?mode=ro&uri=true`) names its file after `file:`."""
    database = parsed.database
    if not database or database == ":memory:":
        return None
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = database.removeprefix("file:")
        if database.startswith("//"):  # file://HOST/PATH: only an empty host (or localhost) is allowed
            database = "/" + database[2:].partition("/")[2]
        return Path(database).expanduser() if database and database != ":memory:" else None
    return Path(database).expanduser()


def is_in_memory(url: str) -> bool:
    """True for a SQLite database that lives in memory only (`""`, `sqlite://`, `:memory:`)."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        return False  # not a URL at all: opening it says so
    return parsed.get_backend_name() == "sqlite" and _sqlite_file(parsed) is None


def _check_writable(engine: Engine) -> None:
    """Raise the database's own error now if it cannot be written (a read-only file or
    connection), instead of at the first write, halfway through a command. SQLite only: a
    server database reports its permissions on the write itself."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        # Rewrites the header with the value it has: a write that changes nothing.
        version = connection.exec_driver_sql("PRAGMA user_version").scalar()
        connection.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


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


def _trajectory_counts() -> Subquery:
    """Readable trajectories per question, as a subquery (question_id, n)."""
    return (select(_Trajectory.question_id, func.count().label("n")).where(_Trajectory.damaged.is_(False))
            .group_by(_Trajectory.question_id).subquery())


# --- migration ------------------------------------------------------------------------


def migrate(engine: Engine, readable: Callable[[str], bool]) -> None:
    """Bring a database of an earlier schema version to SCHEMA_VERSION, in one transaction
    (SQLite and PostgreSQL both run DDL transactionally), so a failure leaves it as it was.

    1 -> 2: `is_admin` becomes `role` (admins stay admins, everyone else is an annotator);
    accounts gain `revoked_at`; trajectories gain `damaged`, set on every row whose data
    `readable` refuses (e.g. a NaN stored as null before input was strict).
    2 -> 3: the `end_user_feedback` table (nothing else changes)."""
    token = _IMMEDIATE.set(True)
    try:
        with engine.begin() as conn:
            found = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
            if found not in MIGRATES_FROM:
                return  # another process migrated it first, or the caller reports the version
            if found == "1":
                _v1_to_v2(conn, readable)
            _EndUserFeedback.__table__.create(conn)
            conn.exec_driver_sql(f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'")
    finally:
        _IMMEDIATE.reset(token)


MIGRATES_FROM = ("1", "2")


def _v1_to_v2(conn, readable: Callable[[str], bool]) -> None:
    dialect = conn.dialect
    timestamp = _UTCDateTime().compile(dialect=dialect)
    boolean = Boolean().compile(dialect=dialect)
    run = conn.exec_driver_sql
    run("ALTER TABLE annotators ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'annotator'")
    run("UPDATE annotators SET role = 'admin' WHERE is_admin")
    run("ALTER TABLE annotators DROP COLUMN is_admin")
    run(f"ALTER TABLE annotators ADD COLUMN revoked_at {timestamp}")
    run(f"ALTER TABLE trajectories ADD COLUMN damaged {boolean} NOT NULL DEFAULT false")
    run("CREATE INDEX ix_trajectories_damaged ON trajectories (damaged)")
    damaged = [row_id for row_id, data in run("SELECT id, data FROM trajectories") if not readable(data)]
    for row_id in damaged:
        conn.execute(_Trajectory.__table__.update().where(_Trajectory.id == row_id).values(damaged=True))


def _require_existing_file(url: str) -> None:
    """Opening a missing SQLite file would create it; a read-only command should say instead."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # _make_engine gives the message
    path = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and not path.is_file():
        raise StoreError(f"no database at {path} (make one with `rankact collect` or "
                         "`rankact feedback demo-data`)")


def _now() -> datetime:
    return datetime.now(UTC)
