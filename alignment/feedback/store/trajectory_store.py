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

import json
import logging
import re
from collections.abc import Collection, Iterable
from typing import Any, Self

from pydantic import ValidationError
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
    UnstorableValueError,
)
from rankact.alignment.feedback.records.end_user import EndUserFeedback, FeedbackIn, FeedbackStatus
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.store.accounts import Account, Accounts, Role, hash_token
from rankact.alignment.feedback.store.database import (
    DEFAULT_URL,
    Database,
    check_writable,
    normalize_url,
    require_existing_file,
)
from rankact.alignment.feedback.store.end_user_votes import EndUserVotes
from rankact.alignment.feedback.store.leases import Leases
from rankact.alignment.feedback.store.migrations import MIGRATES_FROM, migrate
from rankact.alignment.feedback.store.questions import (
    Question,
    question_id_for,
    shuffled_for,
    utf8,
    versioned_id,
)
from rankact.alignment.feedback.store.rankings import Rankings
from rankact.alignment.feedback.store.tables import (
    SCHEMA_VERSION,
    Base,
    LeaseRow,
    MetaRow,
    QuestionRow,
    RankingRow,
    TrajectoryRow,
    question_sha256,
    storable_time,
    trajectory_counts,
    trajectory_ids,
    utc_now,
)

__all__ = ["Account", "ConflictError", "InvalidFeedbackError", "InvalidRankingError", "NotFoundError", "Question", "Role", "SchemaVersionError",
           "StoreError", "TrajectoryStore", "UnstorableValueError", "hash_token", "question_id_for", "shuffled_for", "versioned_id"]
log = logging.getLogger("rankact.store")

# --- the store --------------------------------------------------------------------------


class TrajectoryStore:
    """Questions, trajectories, rankings, end users' votes and accounts in one database.

    Built by composition: questions and trajectories are kept here; accounts, leases, rankings
    and end users' votes are each a part on the same `Database` (`self.db`), and the methods
    below that name them hand the call to their part."""

    def __init__(self, url: str = DEFAULT_URL, *, create: bool = True, write: bool | None = None) -> None:
        """Open (`create`: or make) the store; `write` (default: `create`) checks up front that
        the database can be written, so a read-only one is one error now, not a failure mid-run."""
        self.url = normalize_url(url)
        if not create:
            require_existing_file(self.url)
        self.db = Database(self.url)
        self.engine = self.db.engine
        try:
            self._check_schema(create)
            if create if write is None else write:
                check_writable(self.engine)
        except DatabaseError as exc:  # not a database at all, locked, read-only, unreachable
            self.db.dispose()
            raise StoreError(f"cannot open database {self.url}: {exc.orig}") from exc
        except StoreError:
            self.db.dispose()
            raise
        self._accounts = Accounts(self.db)
        self._leases = Leases(self.db)
        self._rankings = Rankings(self.db)
        self._votes = EndUserVotes(self.db)

    # -- accounts (`accounts`) --

    def create_account(self, name: str, role: Role = "annotator") -> str:
        return self._accounts.create_account(name, role)

    def create_annotator(self, name: str, *, is_admin: bool = False) -> str:
        return self._accounts.create_annotator(name, is_admin=is_admin)

    def rotate_token(self, name: str) -> str:
        return self._accounts.rotate_token(name)

    def revoke(self, name: str) -> Account:
        return self._accounts.revoke(name)

    def authenticate(self, token: str | None) -> Account | None:
        return self._accounts.authenticate(token)

    def accounts(self, role: Role | None = None) -> list[Account]:
        return self._accounts.accounts(role)

    # -- leases (`leases`) --

    def next_question_for(self, annotator: str, lease_seconds: float = 600,
                          max_hold_seconds: float | None = None) -> Question | None:
        chosen = self._leases.next_question_id(annotator, lease_seconds, max_hold_seconds)
        return self.question(chosen) if chosen else None

    def unranked_count(self, annotator: str) -> int:
        return self._leases.unranked_count(annotator)

    def release(self, question_id: str, annotator: str) -> None:
        self._leases.release(question_id, annotator)

    # -- rankings (`rankings`) --

    def submit_ranking(self, ranking: Ranking) -> tuple[Ranking, bool]:
        return self._rankings.submit_ranking(ranking)

    def rankings(self, question_id: str | None = None, *, annotator: str | None = None,
                 source: str | None = None) -> list[Ranking]:
        return self._rankings.rankings(question_id, annotator=annotator, source=source)

    # -- end users' votes (`end_user_votes`) --

    def add_feedback(self, vote: FeedbackIn, *, app: str) -> tuple[EndUserFeedback, FeedbackStatus, str | None]:
        return self._votes.add_feedback(vote, app=app)

    def end_user_feedback(self, question_id: str | None = None, *, end_user: str | None = None,
                          kind: str | None = None, limit: int | None = None, offset: int = 0,
                          exclude_apps: Collection[str] = ()) -> list[EndUserFeedback]:
        return self._votes.end_user_feedback(question_id, end_user=end_user, kind=kind, limit=limit, offset=offset,
                                             exclude_apps=exclude_apps)

    def drop_app_votes(self, app: str) -> int:
        """Delete every end-user vote relayed by account `app`; returns how many were deleted."""
        return self._votes.drop_app_votes(app)

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
            Base.metadata.create_all(self.engine)
            with self.db.write() as session:
                if session.get(MetaRow, "schema_version") is None:
                    session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        with self.db.read() as session:
            row = session.get(MetaRow, "schema_version")
        if row is not None and row.value in MIGRATES_FROM:
            migrate(self.engine, readable=_is_readable)
            with self.db.read() as session:
                row = session.get(MetaRow, "schema_version")
        found = row.value if row else None
        if found != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"{self.url} has schema version {found}, but this rankact uses version {SCHEMA_VERSION}; "
                "export its rankings with the rankact that made it, or use a new database"
            )

    def close(self) -> None:
        self.db.dispose()

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
        utf8(question_id, "question id")
        utf8(text, "question")
        with self.db.write() as session:
            self._upsert_question(session, question_id, text, gold, metadata)
        return question_id

    @staticmethod
    def _upsert_question(session: Session, question_id: str, text: str, gold, metadata) -> QuestionRow:
        row = session.get(QuestionRow, question_id)
        if row is None:
            row = QuestionRow(id=question_id, text=text, gold=list(gold or []), meta=dict(metadata or {}),
                            created_at=utc_now())
            session.add(row)
            session.flush()
        else:
            if gold and not row.gold:
                row.gold = list(gold)
            if metadata:
                row.meta = {**(row.meta or {}), **metadata}
        return row

    def add(self, trajectory: Trajectory, question_id: str | None = None, gold: list[str] | None = None) -> str:
        """Store a trajectory under its question (created on first use). Returns the question id
        it was stored under: a question leased to an annotator right now takes it as its next
        free version instead, so the ranking they are writing still orders exactly the question's
        trajectories. The same trajectory sent again raises AlreadyStoredError (a ConflictError a
        client counts as delivered); its id with other content, ConflictError. A question that has
        rankings is closed: QuestionClosedError names the next free version, and nothing is stored.
        UnstorableValueError for a `created_at` before 1970 or in the future."""
        question_id = question_id or question_id_for(trajectory.question)
        utf8(question_id, "question id")
        created = storable_time(trajectory.created_at, "the trajectory's created_at")
        data = _readable_json(trajectory)
        model = trajectory.model.backend + ":" + trajectory.model.name
        try:
            with self.db.write() as session:
                if (stored := session.get(TrajectoryRow, trajectory.id)) is not None:
                    raise _clash(trajectory.id, data, stored)
                self._require_open(session, question_id)
                question_id = _unleased_version(session, question_id)
                self._upsert_question(session, question_id, trajectory.question, gold, None)
                session.add(TrajectoryRow(
                    id=trajectory.id, question_id=question_id, question=trajectory.question,
                    question_sha256=question_sha256(trajectory.question), model=model,
                    status=trajectory.status, created_at=created, data=data,
                ))
        except IntegrityError as exc:  # another writer stored the same id first (PostgreSQL)
            with self.db.read() as session:
                stored = session.get(TrajectoryRow, trajectory.id)
            if stored is None:
                raise ConflictError(f"a trajectory with id {trajectory.id} is already stored") from exc
            raise _clash(trajectory.id, data, stored) from exc
        return question_id

    @staticmethod
    def _require_open(session: Session, question_id: str) -> None:
        if session.scalar(select(func.count()).where(RankingRow.question_id == question_id)) == 0:
            return
        version = 2
        while session.scalar(select(func.count()).where(RankingRow.question_id == versioned_id(question_id, version))):
            version += 1
        raise QuestionClosedError(
            f"question {question_id} already has rankings, so it takes no new trajectories (they would not be "
            f"in its rankings); post them to a new version of the question: question id "
            f"{versioned_id(question_id, version)} (in the API: \"version\": {version})",
            question_id=question_id, next_version=version, next_question_id=versioned_id(question_id, version),
        )

    def get(self, trajectory_id: str) -> Trajectory:
        with self.db.read() as session:
            row = session.get(TrajectoryRow, trajectory_id)
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
        query = (select(TrajectoryRow.id, TrajectoryRow.data).where(TrajectoryRow.damaged.is_(False))
                 .order_by(TrajectoryRow.created_at, TrajectoryRow.id))
        if question_id is not None:
            query = query.where(TrajectoryRow.question_id == question_id)
        if model is not None:
            query = query.where(TrajectoryRow.model == model)
        if status is not None:
            query = query.where(TrajectoryRow.status == status)
        query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as session:
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
            with self.db.write() as session:
                session.execute(update(TrajectoryRow).where(TrajectoryRow.id.in_(damaged)).values(damaged=True))
        return found

    def damaged_ids(self) -> list[str]:
        """Trajectories kept but left out of reads because their data does not read back."""
        with self.db.read() as session:
            return sorted(session.scalars(select(TrajectoryRow.id).where(TrajectoryRow.damaged.is_(True))))

    def trajectory_ids(self, question_id: str) -> list[str]:
        with self.db.read() as session:
            return trajectory_ids(session, question_id)

    def count_trajectories(self, question_id: str | None = None) -> int:
        query = select(func.count()).select_from(TrajectoryRow).where(TrajectoryRow.damaged.is_(False))
        if question_id is not None:
            query = query.where(TrajectoryRow.question_id == question_id)
        with self.db.read() as session:
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
        n_traj = trajectory_counts()
        n_rank = (select(RankingRow.question_id, func.count().label("n"))
                  .group_by(RankingRow.question_id).subquery())
        query = (
            select(QuestionRow, func.coalesce(n_traj.c.n, 0), func.coalesce(n_rank.c.n, 0))
            .outerjoin(n_traj, n_traj.c.question_id == QuestionRow.id)
            .outerjoin(n_rank, n_rank.c.question_id == QuestionRow.id)
            .order_by(QuestionRow.created_at, QuestionRow.id)
        )
        if question_id is not None:
            query = query.where(QuestionRow.id == question_id)
        with self.db.read() as session:
            return [
                Question(id=q.id, text=q.text, gold=q.gold or [], metadata=q.meta or {}, created_at=q.created_at,
                         trajectories=nt, rankings=nr)
                for q, nt, nr in session.execute(query)
            ]


def _clash(trajectory_id: str, data: str, stored: TrajectoryRow) -> ConflictError:
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


def _unleased_version(session: Session, question_id: str) -> str:
    """`question_id`, or while an annotator holds a live lease on it, its next version that is
    neither leased nor ranked. Why a new version rather than letting the ranking skip additions:
    a ranked question takes no trajectories, so one added under a lease and left out of the
    ranking would never be ranked; in the next version it is, and nothing is lost."""
    now = utc_now()
    match = re.search(r"-v(\d+)$", question_id)
    version = int(match.group(1)) if match else 1
    candidate = question_id
    while session.scalar(select(func.count()).select_from(LeaseRow).where(
            LeaseRow.question_id == candidate, LeaseRow.expires_at > now)) or (
            candidate != question_id and session.scalar(select(func.count()).where(RankingRow.question_id == candidate))):
        version += 1
        candidate = versioned_id(question_id, version)
    return candidate


def _readable_json(trajectory: Trajectory) -> str:
    """The trajectory's JSON, checked to validate again: NaN would be written as null, a lone
    surrogate cannot be encoded, and either would make the row unreadable for good."""
    if (outside := trajectory.token_ids_outside()) is not None:  # no tokenizer has such ids
        raise StoreError(f"trajectory {trajectory.id!r} cannot be stored: {outside}")
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
