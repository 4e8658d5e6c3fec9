"""The store's database: the engine with the SQLite settings that make every acknowledged
write durable (WAL, synchronous=FULL) and let concurrent writers queue instead of failing
(BEGIN IMMEDIATE, busy timeout), and `Database`, the read and write sessions every part of the
store shares."""
from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from rankact.alignment.errors import StoreError, UnstorableValueError

DEFAULT_URL = "sqlite:///rankact.db"


class Database:
    """One engine and the sessions on it: `write()` opens a transaction that takes SQLite's
    write lock up front and commits on leaving; `read()` a plain session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    @contextmanager
    def write(self) -> Iterator[Session]:
        token = IMMEDIATE.set(True)
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except DBAPIError as exc:
            if is_data_error(exc):
                raise UnstorableValueError(f"the database refused a value: {first_line(exc.orig)}") from exc
            raise
        finally:
            IMMEDIATE.reset(token)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


# Set while a write transaction opens, so SQLite takes the write lock up front (BEGIN
# IMMEDIATE): two writers then queue on the busy timeout instead of one failing on upgrade.
IMMEDIATE: contextvars.ContextVar[bool] = contextvars.ContextVar("rankact_store_immediate", default=False)


# SQLSTATE classes of errors in the data itself, not in the database: 22 data exception (a value
# out of range, a NUL in text), 54 program limit exceeded (an index row over PostgreSQL's btree
# limit). The same write fails the same way every time, so they must never read as "try again".
DATA_ERROR_CLASSES = ("22", "54")


def is_data_error(exc: DBAPIError) -> bool:
    """True when the database refused the data, not the connection or the transaction."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
    if sqlstate:
        return sqlstate[:2] in DATA_ERROR_CLASSES
    return type(exc.orig).__name__ == "DataError"  # SQLite gives no SQLSTATE


def first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def normalize_url(url: str) -> str:
    """Accept a bare file path as shorthand for a SQLite URL."""
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def make_engine(url: str) -> Engine:
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
        conn.exec_driver_sql("BEGIN IMMEDIATE" if IMMEDIATE.get() else "BEGIN")

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


def check_writable(engine: Engine) -> None:
    """Raise the database's own error now if it cannot be written (a read-only file or
    connection), instead of at the first write, halfway through a command. SQLite only: a
    server database reports its permissions on the write itself."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        # Rewrites the header with the value it has: a write that changes nothing.
        version = connection.exec_driver_sql("PRAGMA user_version").scalar()
        connection.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


def require_existing_file(url: str) -> None:
    """Opening a missing SQLite file would create it; a read-only command should say instead."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # make_engine gives the message
    path = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and not path.is_file():
        raise StoreError(f"no database at {path} (make one with `rankact collect` or "
                         "`rankact feedback demo-data`)")
