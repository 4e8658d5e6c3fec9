"""The trajectory store: questions, trajectories, rankings, annotators and leases in one SQL
database (a SQLite file by default, PostgreSQL by URL).

Trajectories are kept whole as JSON (the trainers need every segment) with a few indexed
columns beside them for listing. Rankings are kept raw (who, when, the order with ties);
pairs are derived only at export time. Every method that writes commits before it returns,
and SQLite runs in WAL mode with synchronous=FULL, so an acknowledged write survives a crash.
"""
from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.orm import Session

from agent.trajectory import Trajectory
from alignment.errors import ConflictError, InvalidRankingError, NotFoundError, SchemaVersionError, StoreError
from alignment.feedback.rankings import Ranking, StepFlag
from alignment.feedback.store_schema import (
    _IMMEDIATE,
    DEFAULT_URL,
    SCHEMA_VERSION,
    _Annotator,
    _Base,
    _check_writable,
    _Lease,
    _make_engine,
    _Meta,
    _now,
    _Question,
    _Ranking,
    _require_existing_file,
    _Trajectory,
    normalize_url,
)

# --- public records ---------------------------------------------------------------------


class Question(BaseModel):
    id: str
    text: str
    gold: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    trajectories: int = 0
    rankings: int = 0


class Annotator(BaseModel):
    name: str
    is_admin: bool = False
    created_at: datetime


def question_id_for(text: str) -> str:
    """The default question id: stable in the text, and the same as a Task's default id."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def shuffled_for(annotator: str, question_id: str, items: list[Any], key=lambda x: x) -> list[Any]:
    """Items in an order shuffled per annotator and question, the same on every load, so the
    position a trajectory is shown in cannot bias every annotator the same way."""
    seed = int.from_bytes(hashlib.sha256(f"{annotator}\0{question_id}".encode()).digest()[:8], "big")
    ordered = sorted(items, key=key)
    random.Random(seed).shuffle(ordered)
    return ordered


# --- the store --------------------------------------------------------------------------


class TrajectoryStore:
    """Questions, trajectories, rankings and annotators in one database."""

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
        """Store a trajectory under its question (created on first use). Returns the question id."""
        question_id = question_id or question_id_for(trajectory.question)
        model = trajectory.model.backend + ":" + trajectory.model.name
        try:
            with self._write() as session:
                if session.get(_Trajectory, trajectory.id) is not None:
                    raise ConflictError(f"a trajectory with id {trajectory.id} is already stored")
                self._upsert_question(session, question_id, trajectory.question, gold, None)
                session.add(_Trajectory(
                    id=trajectory.id, question_id=question_id, question=trajectory.question, model=model,
                    status=trajectory.status, created_at=trajectory.created_at, data=trajectory.to_json(),
                ))
        except IntegrityError as exc:  # another writer stored the same id first (PostgreSQL)
            raise ConflictError(f"a trajectory with id {trajectory.id} is already stored") from exc
        return question_id

    def get(self, trajectory_id: str) -> Trajectory:
        with self._read() as session:
            row = session.get(_Trajectory, trajectory_id)
        if row is None:
            raise NotFoundError(f"no trajectory with id {trajectory_id!r}")
        return Trajectory.from_json(row.data)

    def list(
        self, question_id: str | None = None, *, model: str | None = None, status: str | None = None,
        limit: int | None = None, offset: int = 0,
    ) -> list[Trajectory]:
        query = select(_Trajectory.data).order_by(_Trajectory.created_at, _Trajectory.id)
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
            return [Trajectory.from_json(data) for data in session.scalars(query)]

    def trajectory_ids(self, question_id: str) -> list[str]:
        with self._read() as session:
            return sorted(session.scalars(select(_Trajectory.id).where(_Trajectory.question_id == question_id)))

    def count_trajectories(self, question_id: str | None = None) -> int:
        query = select(func.count()).select_from(_Trajectory)
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
        n_traj = (select(_Trajectory.question_id, func.count().label("n"))
                  .group_by(_Trajectory.question_id).subquery())
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

    # -- leases: which question an annotator gets next --

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
            n_traj = (select(_Trajectory.question_id, func.count().label("n"))
                      .group_by(_Trajectory.question_id).subquery())
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
        n_traj = (select(_Trajectory.question_id, func.count().label("n"))
                  .group_by(_Trajectory.question_id).subquery())
        ranked = select(_Ranking.question_id).where(_Ranking.annotator == annotator)
        query = select(func.count()).select_from(n_traj).where(n_traj.c.n >= 2, n_traj.c.question_id.not_in(ranked))
        with self._read() as session:
            return session.scalar(query) or 0

    def release(self, question_id: str, annotator: str) -> None:
        with self._write() as session:
            session.execute(delete(_Lease).where(_Lease.question_id == question_id, _Lease.annotator == annotator))

    # -- rankings --

    def submit_ranking(self, ranking: Ranking) -> tuple[Ranking, bool]:
        """Store a ranking. It must order exactly its question's trajectories (ties allowed).
        One ranking per (question, annotator): repeating a submission changes nothing, a new
        order from the same annotator replaces their old one. Returns (stored, created)."""
        expected = set(self.trajectory_ids(ranking.question_id))
        if not expected:
            self.question(ranking.question_id)  # raises NotFoundError for an unknown question
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
        for _attempt in range(3):
            try:
                return self._upsert_ranking(ranking)
            except IntegrityError:  # a concurrent first submission won the unique key; retry as update
                continue
        raise ConflictError("could not store the ranking: too many concurrent submissions")

    def _upsert_ranking(self, ranking: Ranking) -> tuple[Ranking, bool]:
        flags = [f.model_dump() for f in ranking.flags]
        with self._write() as session:
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
            return [_to_ranking(row) for row in session.scalars(query)]

    # -- annotators --

    def create_annotator(self, name: str, *, is_admin: bool = False) -> str:
        """Register an annotator; returns their token (only its hash is stored)."""
        name = name.strip()
        if not name or len(name) > 128:
            raise StoreError("an annotator name must have 1 to 128 characters")
        token = secrets.token_urlsafe(24)
        try:
            with self._write() as session:
                if session.get(_Annotator, name) is not None:
                    raise ConflictError(f"annotator {name!r} already exists")
                session.add(_Annotator(name=name, token_hash=hash_token(token), is_admin=is_admin,
                                       created_at=_now()))
        except IntegrityError as exc:
            raise ConflictError(f"annotator {name!r} already exists") from exc
        return token

    def authenticate(self, token: str | None) -> Annotator | None:
        if not token:
            return None
        with self._read() as session:
            row = session.scalars(select(_Annotator).where(_Annotator.token_hash == hash_token(token))).first()
        return Annotator(name=row.name, is_admin=row.is_admin, created_at=row.created_at) if row else None

    def annotators(self) -> list[Annotator]:
        with self._read() as session:
            rows = session.scalars(select(_Annotator).order_by(_Annotator.name))
            return [Annotator(name=r.name, is_admin=r.is_admin, created_at=r.created_at) for r in rows]


def _to_ranking(row: _Ranking) -> Ranking:
    return Ranking(
        id=row.id, question_id=row.question_id, annotator=row.annotator, order=row.order,
        source=row.source, created_at=row.created_at, flags=[StepFlag(**f) for f in row.flags or []],
        comment=row.comment or "",
    )
