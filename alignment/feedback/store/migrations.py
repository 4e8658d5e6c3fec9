"""Migration of databases made by earlier schema versions of the store, in place."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Boolean
from sqlalchemy.engine import Engine

from rankact.alignment.feedback.store.database import IMMEDIATE
from rankact.alignment.feedback.store.tables import (
    SCHEMA_VERSION,
    EndUserFeedbackRow,
    TrajectoryRow,
    UTCDateTime,
    question_sha256,
)


def migrate(engine: Engine, readable: Callable[[str], bool]) -> None:
    """Bring a database of an earlier schema version to SCHEMA_VERSION, in one transaction
    (SQLite and PostgreSQL both run DDL transactionally), so a failure leaves it as it was.

    1 -> 2: `is_admin` becomes `role` (admins stay admins, everyone else is an annotator);
    accounts gain `revoked_at`; trajectories gain `damaged`, set on every row whose data
    `readable` refuses (e.g. a NaN stored as null before input was strict).
    2 -> 3: the `end_user_feedback` table (nothing else changes).
    3 -> 4: trajectories' question indexed by its SHA-256 (`question_sha256`), not by value
    (PostgreSQL refused questions over ~2.7 KB); leases gain `since` (the renewal cap); votes
    gain `feedback_id`, unique per app (the row id was one namespace shared by every app)."""
    token = IMMEDIATE.set(True)
    try:
        with engine.begin() as conn:
            found = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
            if found not in MIGRATES_FROM:
                return  # another process migrated it first, or the caller reports the version
            if found == "1":
                _v1_to_v2(conn, readable)
            if found in ("1", "2"):
                EndUserFeedbackRow.__table__.create(conn)  # already in its version-4 shape
            else:
                _v3_votes_to_v4(conn)
            _v3_to_v4(conn)
            conn.exec_driver_sql(f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'")
    finally:
        IMMEDIATE.reset(token)


MIGRATES_FROM = ("1", "2", "3")


def _v1_to_v2(conn, readable: Callable[[str], bool]) -> None:
    dialect = conn.dialect
    timestamp = UTCDateTime().compile(dialect=dialect)
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
        conn.execute(TrajectoryRow.__table__.update().where(TrajectoryRow.id == row_id).values(damaged=True))


def _v3_to_v4(conn) -> None:
    timestamp = UTCDateTime().compile(dialect=conn.dialect)
    run = conn.exec_driver_sql
    run("ALTER TABLE trajectories ADD COLUMN question_sha256 VARCHAR(64)")
    table = TrajectoryRow.__table__
    for row_id, text in list(run("SELECT id, question FROM trajectories")):
        conn.execute(table.update().where(table.c.id == row_id).values(question_sha256=question_sha256(text)))
    run("DROP INDEX ix_trajectories_question")
    run("CREATE INDEX ix_trajectories_question_sha256 ON trajectories (question_sha256)")
    run(f"ALTER TABLE leases ADD COLUMN since {timestamp}")


def _v3_votes_to_v4(conn) -> None:
    run = conn.exec_driver_sql
    run("ALTER TABLE end_user_feedback ADD COLUMN feedback_id VARCHAR(128)")
    run("UPDATE end_user_feedback SET feedback_id = id")  # ids so far were the apps' own
    run("CREATE UNIQUE INDEX uq_end_user_feedback_app_id ON end_user_feedback (app, feedback_id)")
    run("CREATE INDEX ix_end_user_feedback_app ON end_user_feedback (app)")
