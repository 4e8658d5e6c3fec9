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
)


def migrate(engine: Engine, readable: Callable[[str], bool]) -> None:
    """Bring a database of an earlier schema version to SCHEMA_VERSION, in one transaction
    (SQLite and PostgreSQL both run DDL transactionally), so a failure leaves it as it was.

    1 -> 2: `is_admin` becomes `role` (admins stay admins, everyone else is an annotator);
    accounts gain `revoked_at`; trajectories gain `damaged`, set on every row whose data
    `readable` refuses (e.g. a NaN stored as null before input was strict).
    2 -> 3: the `end_user_feedback` table (nothing else changes)."""
    token = IMMEDIATE.set(True)
    try:
        with engine.begin() as conn:
            found = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
            if found not in MIGRATES_FROM:
                return  # another process migrated it first, or the caller reports the version
            if found == "1":
                _v1_to_v2(conn, readable)
            EndUserFeedbackRow.__table__.create(conn)
            conn.exec_driver_sql(f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'")
    finally:
        IMMEDIATE.reset(token)


MIGRATES_FROM = ("1", "2")


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
