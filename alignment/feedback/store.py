"""The trajectory store: questions, trajectories, rankings, end users' votes, accounts and leases in one SQL
database (a SQLite file by default, PostgreSQL by URL).

Trajectories are kept whole as JSON (the trainers need every segment) with a few indexed
columns beside them for listing. Rankings are kept raw (who, when, the order with ties);
pairs are derived only at export time. Every method that writes commits before it returns,
and SQLite runs in WAL mode with synchronous=FULL, so an acknowledged write survives a crash.

Nothing is stored that cannot be read back: `add` checks that the trajectory's JSON
validates again. A row that does not (written by an older rankact, or edited by hand) is
marked damaged with a logged warning and left out of every read, so one bad row never
fails a list, an annotator's queue or an export. A question that has rankings takes no new
trajectories (the rankings order exactly the ones it had); new runs go to a new version of
the question (`question_id_for(text, version)`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, inspect, select, update
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.orm import Session

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import (
    AlreadyStoredError,
    ConflictError,
    InvalidFeedbackError,
    InvalidRankingError,
    NotFoundError,
    QuestionClosedError,
    SchemaVersionError,
    StoreError,
)
from rankact.alignment.feedback.store_accounts import Account, AccountsMixin, Role, hash_token
from rankact.alignment.feedback.store_end_user import EndUserMixin
from rankact.alignment.feedback.store_leases import LeasesMixin
from rankact.alignment.feedback.store_rankings import RankingsMixin, _trajectory_ids
from rankact.alignment.feedback.store_schema import (
    _IMMEDIATE,
    DEFAULT_URL,
    MIGRATES_FROM,
    SCHEMA_VERSION,
    _Base,
    _check_writable,
    _make_engine,
    _Meta,
    _now,
    _Question,
    _Ranking,
    _require_existing_file,
    _Trajectory,
    _trajectory_counts,
    migrate,
    normalize_url,
)

__all__ = ["Account", "ConflictError", "InvalidFeedbackError", "InvalidRankingError", "NotFoundError", "Question", "Role", "SchemaVersionError",
           "StoreError", "TrajectoryStore", "hash_token", "question_id_for", "shuffled_for", "versioned_id"]
log = logging.getLogger("rankact.store")

# --- public records ---------------------------------------------------------------------


class Question(BaseModel):
    id: str
    text: str
    gold: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    trajectories: int = 0
    rankings: int = 0


def question_id_for(text: str, version: int = 1) -> str:
    """The default question id: stable in the text (the same as a Task's default id), with
    `-v<version>` from version 2 on."""
    return versioned_id(hashlib.sha256(_utf8(text, "question")).hexdigest()[:16], version)


def versioned_id(question_id: str, version: int) -> str:
    """`question_id` as version `version`: ("q", 2) -> "q-v2"; ("q-v2", 3) -> "q-v3"; version 1 leaves it."""
    if version <= 1:
        return question_id
    return re.sub(r"-v\d+$", "", question_id) + f"-v{version}"


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: no database can store it
        raise StoreError(f"the {what} is not valid Unicode text ({exc.reason} at position {exc.start})") from exc


def shuffled_for(annotator: str, question_id: str, items: list[Any], key=lambda x: x) -> list[Any]:
    """Items in an order shuffled per annotator and question, the same on every load, so the
    position a trajectory is shown in cannot bias every annotator the same way."""
    seed = int.from_bytes(hashlib.sha256(f"{annotator}\0{question_id}".encode()).digest()[:8], "big")
    ordered = sorted(items, key=key)
    random.Random(seed).shuffle(ordered)
    return ordered


# --- the store --------------------------------------------------------------------------


class TrajectoryStore(AccountsMixin, LeasesMixin, RankingsMixin, EndUserMixin):
    """Questions, trajectories, rankings, end users' votes and accounts in one database."""

    def __init__(self, url: str = DEFAULT_URL, *, create: bool = True, write: bool | None = None) -> None:
        """Open (`create`: or make) the store; `write` (default: `create`) checks up front that
        the database can be written, so a read-only one is one error now, not a failure mid-run."""
        self.url = normalize_url(url)
        if not create:
            _require_existing_file(self.url)
        self.engine = _make_engine(self.url)
        try:
            self._check_schema(create)
            if create if write is None else write:
                _check_writable(self.engine)
        except DatabaseError as exc:  # not a database at all, locked, read-only, unreachable
            self.engine.dispose()
            raise StoreError(f"cannot open database {self.url}: {exc.orig}") from exc
        except StoreError:
            self.engine.dispose()
            raise

    # -- plumbing --

    def _check_schema(self, create: bool) -> None:
        tables = set(inspect(self.engine).get_table_names())
        if "meta" not in tables:
            if tables & {"questions", "trajectories", "rankings"}:
                raise SchemaVersionError(
                    f"{self.url} holds tables but no rankact schema version; it was not made by rankact"
                )
            if not create:
                raise StoreError(f"{self.url} has no rankact tables")
            _Base.metadata.create_all(self.engine)
            with self._write() as session:
                if session.get(_Meta, "schema_version") is None:
                    session.add(_Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        with self._read() as session:
            row = session.get(_Meta, "schema_version")
        if row is not None and row.value in MIGRATES_FROM:
            migrate(self.engine, readable=_is_readable)
            with self._read() as session:
                row = session.get(_Meta, "schema_version")
        found = row.value if row else None
        if found != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"{self.url} has schema version {found}, but this rankact uses version {SCHEMA_VERSION}; "
                "export its rankings with the rankact that made it, or use a new database"
            )

    @contextmanager
    def _write(self) -> Iterator[Session]:
        token = _IMMEDIATE.set(True)
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        finally:
            _IMMEDIATE.reset(token)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    # -- questions and trajectories --

    def add_question(
        self, text: str, question_id: str | None = None, gold: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Create a question, or fill in gold answers / metadata on an existing one."""
        question_id = question_id or question_id_for(text)
        _utf8(question_id, "question id")
        _utf8(text, "question")
        with self._write() as session:
            self._upsert_question(session, question_id, text, gold, metadata)
        return question_id

    @staticmethod
    def _upsert_question(session: Session, question_id: str, text: str, gold, metadata) -> _Question:
        row = session.get(_Question, question_id)
        if row is None:
            row = _Question(id=question_id, text=text, gold=list(gold or []), meta=dict(metadata or {}),
                            created_at=_now())
            session.add(row)
            session.flush()
        else:
            if gold and not row.gold:
                row.gold = list(gold)
            if metadata:
                row.meta = {**(row.meta or {}), **metadata}
        return row

    def add(self, trajectory: Trajectory, question_id: str | None = None, gold: list[str] | None = None) -> str:
        """Store a trajectory under its question (created on first use). Returns the question id.
        The same trajectory sent again raises AlreadyStoredError (a ConflictError a client counts
        as delivered); its id with other content, ConflictError. A question that has rankings is
        closed: QuestionClosedError names the next free version, and nothing is stored."""
        question_id = question_id or question_id_for(trajectory.question)
        _utf8(question_id, "question id")
        data = _readable_json(trajectory)
        model = trajectory.model.backend + ":" + trajectory.model.name
        try:
            with self._write() as session:
                if (stored := session.get(_Trajectory, trajectory.id)) is not None:
                    raise _clash(trajectory.id, data, stored)
                self._require_open(session, question_id)
                self._upsert_question(session, question_id, trajectory.question, gold, None)
                session.add(_Trajectory(
                    id=trajectory.id, question_id=question_id, question=trajectory.question, model=model,
                    status=trajectory.status, created_at=trajectory.created_at, data=data,
                ))
        except IntegrityError as exc:  # another writer stored the same id first (PostgreSQL)
            with self._read() as session:
                stored = session.get(_Trajectory, trajectory.id)
            if stored is None:
                raise ConflictError(f"a trajectory with id {trajectory.id} is already stored") from exc
            raise _clash(trajectory.id, data, stored) from exc
        return question_id

    @staticmethod
    def _require_open(session: Session, question_id: str) -> None:
        if session.scalar(select(func.count()).where(_Ranking.question_id == question_id)) == 0:
            return
        version = 2
        while session.scalar(select(func.count()).where(_Ranking.question_id == versioned_id(question_id, version))):
            version += 1
        raise QuestionClosedError(
            f"question {question_id} already has rankings, so it takes no new trajectories (they would not be "
            f"in its rankings); post them to a new version of the question: question id "
            f"{versioned_id(question_id, version)} (in the API: \"version\": {version})",
            question_id=question_id, next_version=version, next_question_id=versioned_id(question_id, version),
        )

    def get(self, trajectory_id: str) -> Trajectory:
        with self._read() as session:
            row = session.get(_Trajectory, trajectory_id)
        if row is None:
            raise NotFoundError(f"no trajectory with id {trajectory_id!r}")
        found = self._readable([(row.id, row.data)]) if not row.damaged else []
        if not found:
            raise NotFoundError(f"trajectory {trajectory_id!r} is stored but damaged (unreadable); it is left out")
        return found[0]

    def list(
        self, question_id: str | None = None, *, model: str | None = None, status: str | None = None,
        limit: int | None = None, offset: int = 0,
    ) -> list[Trajectory]:
        query = (select(_Trajectory.id, _Trajectory.data).where(_Trajectory.damaged.is_(False))
                 .order_by(_Trajectory.created_at, _Trajectory.id))
        if question_id is not None:
            query = query.where(_Trajectory.question_id == question_id)
        if model is not None:
            query = query.where(_Trajectory.model == model)
        if status is not None:
            query = query.where(_Trajectory.status == status)
        query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as session:
            rows = list(session.execute(query))
        return self._readable(rows)

    def _readable(self, rows: Iterable[tuple[str, str]]) -> list[Trajectory]:
        """The rows that read back as trajectories; any other is marked damaged, with a warning."""
        found, damaged = [], []
        for row_id, data in rows:
            try:
                found.append(Trajectory.from_json(data))
            except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                log.warning("trajectory %s is damaged and left out of every read: %s", row_id,
                            str(exc).splitlines()[0])
                damaged.append(row_id)
        if damaged:
            with self._write() as session:
                session.execute(update(_Trajectory).where(_Trajectory.id.in_(damaged)).values(damaged=True))
        return found

    def damaged_ids(self) -> list[str]:
        """Trajectories kept but left out of reads because their data does not read back."""
        with self._read() as session:
            return sorted(session.scalars(select(_Trajectory.id).where(_Trajectory.damaged.is_(True))))

    def trajectory_ids(self, question_id: str) -> list[str]:
        with self._read() as session:
            return _trajectory_ids(session, question_id)

    def count_trajectories(self, question_id: str | None = None) -> int:
        query = select(func.count()).select_from(_Trajectory).where(_Trajectory.damaged.is_(False))
        if question_id is not None:
            query = query.where(_Trajectory.question_id == question_id)
        with self._read() as session:
            return session.scalar(query) or 0

    def sample_indices(self, question_id: str) -> set[int]:
        """Which sample numbers (`metadata.sample_index`) a question already has, for resuming."""
        done: set[int] = set()
        for trajectory in self.list(question_id):
            index = trajectory.metadata.get("sample_index")
            if isinstance(index, int):
                done.add(index)
        return done

    def question(self, question_id: str) -> Question:
        found = self._questions(question_id)
        if not found:
            raise NotFoundError(f"no question with id {question_id!r}")
        return found[0]

    def questions(self) -> list[Question]:
        return self._questions(None)

    def _questions(self, question_id: str | None) -> list[Question]:
        n_traj = _trajectory_counts()
        n_rank = (select(_Ranking.question_id, func.count().label("n"))
                  .group_by(_Ranking.question_id).subquery())
        query = (
            select(_Question, func.coalesce(n_traj.c.n, 0), func.coalesce(n_rank.c.n, 0))
            .outerjoin(n_traj, n_traj.c.question_id == _Question.id)
            .outerjoin(n_rank, n_rank.c.question_id == _Question.id)
            .order_by(_Question.created_at, _Question.id)
        )
        if question_id is not None:
            query = query.where(_Question.id == question_id)
        with self._read() as session:
            return [
                Question(id=q.id, text=q.text, gold=q.gold or [], metadata=q.meta or {}, created_at=q.created_at,
                         trajectories=nt, rankings=nr)
                for q, nt, nr in session.execute(query)
            ]


def _clash(trajectory_id: str, data: str, stored: _Trajectory) -> ConflictError:
    """What storing `data` under an id that is stored already means: the same trajectory again is
    a re-send (where it is stored, under which question, stays as the first write made it);
    other content under the id is a real conflict."""
    try:
        same = json.loads(stored.data) == json.loads(data)
    except (TypeError, ValueError):  # a damaged row: not the same
        same = False
    if same:
        return AlreadyStoredError(f"trajectory {trajectory_id} is already stored (question {stored.question_id})",
                                  question_id=stored.question_id)
    return ConflictError(f"a trajectory with id {trajectory_id} is already stored with other content: "
                         "a trajectory id must name one trajectory")


def _readable_json(trajectory: Trajectory) -> str:
    """The trajectory's JSON, checked to validate again: NaN would be written as null, a lone
    surrogate cannot be encoded, and either would make the row unreadable for good."""
    try:
        data = trajectory.to_json()
        Trajectory.from_json(data)
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise StoreError(f"trajectory {trajectory.id!r} would not read back once stored "
                         f"(e.g. NaN or infinity, or text that is not valid Unicode): {first[-1] if first else exc}"
                         ) from exc
    return data


def _is_readable(data: str) -> bool:
    try:
        Trajectory.from_json(data)
    except (ValueError, TypeError):
        return False
    return True
