"""Where the recorder delivers a line: the feedback service over HTTP, or a store by URL.

Each target answers one delivery with an `Outcome` the recorder acts on: `delivered`,
`duplicate` (the id is stored already: delivered), `retry` (down, slow, overloaded: back off
and try again; `blocked` when the token is refused, which only the app can fix) or `reject`
(the data itself is refused: dead-letter it, never retry).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from rankact.alignment.errors import RecorderError

# Statuses that say "later" rather than "never".
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
# A spool line holding an end user's vote starts so; any other line (those written before votes
# existed included) is a trajectory.
FEEDBACK_PREFIX = b'{"kind":"feedback","body":'
# The account name votes delivered straight into a store are kept under.
STORE_APP = "local"


def feedback_line(body: bytes) -> bytes:
    return FEEDBACK_PREFIX + body + b"}"


def feedback_body(line: bytes) -> bytes | None:
    """The vote's body when `line` is a vote, else None (a trajectory)."""
    if not line.startswith(FEEDBACK_PREFIX):
        return None
    return json.dumps(json.loads(line)["body"]).encode()


@dataclass(frozen=True)
class Outcome:
    kind: Literal["delivered", "duplicate", "retry", "reject"]
    reason: str = ""
    retry_after: float | None = None
    blocked: bool = False


DELIVERED = Outcome("delivered")
DUPLICATE = Outcome("duplicate")


class Target(Protocol):
    name: str

    def deliver(self, line: bytes, *, timeout: float) -> Outcome: ...

    def close(self) -> None: ...


def open_target(target: str, *, token: str | None = None, transport: Any = None) -> Target:
    """An HTTP(S) URL is the service (a token is needed); anything else a store URL or path."""
    if not isinstance(target, str) or not target.strip():
        raise RecorderError("the recorder needs a target: the service's URL or a store URL")
    if target.startswith(("http://", "https://")):
        if not token:
            raise RecorderError(f"recording to {target} needs a token (`rankact admin create NAME --role ingest`)")
        return HttpTarget(target, token, transport=transport)
    if target.split("://", 1)[0].startswith(("sqlite", "postgresql")) or "://" not in target:
        return StoreTarget(target)
    raise RecorderError(f"unknown recorder target {target!r}: use http(s)://HOST:PORT, sqlite:///FILE "
                        "or postgresql://...")


class HttpTarget:
    """`POST /api/trajectories` on the feedback service, one trajectory a request on one
    keep-alive connection (the service has no bulk endpoint)."""

    def __init__(self, base_url: str, token: str, *, transport: Any = None) -> None:
        self.name = base_url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.name, transport=transport,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def deliver(self, line: bytes, *, timeout: float) -> Outcome:
        vote = feedback_body(line)
        try:
            response = self.client.post("/api/trajectories" if vote is None else "/api/feedback",
                                        content=line if vote is None else vote, timeout=timeout)
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc or 'no answer'}")
        status = response.status_code
        if status == 200 and vote is not None:
            return DUPLICATE  # sent before, or a newer vote of that user is stored
        if status in (200, 201):
            return DELIVERED
        reason = f"HTTP {status}: {_detail(response)}"
        if status == 409:
            # trajectories: the id is stored already; votes: the feedback id holds another vote
            return DUPLICATE if vote is None else Outcome("reject", reason)
        if status in (401, 403):
            return Outcome("retry", f"the service refused the token ({reason})", blocked=True)
        if status in _TRANSIENT:
            return Outcome("retry", reason, retry_after=_retry_after(response))
        return Outcome("reject", reason)

    def close(self) -> None:
        self.client.close()


class StoreTarget:
    """`TrajectoryStore.add`, opened on first use in the recorder's thread (so a database that
    is down at start is retried like a service that is down)."""

    def __init__(self, url: str) -> None:
        self.name = url
        self.store: Any = None

    def deliver(self, line: bytes, *, timeout: float) -> Outcome:
        from pydantic import ValidationError
        from sqlalchemy.exc import DBAPIError, OperationalError

        from rankact.agent.trajectory import Trajectory
        from rankact.alignment.errors import (
            ConflictError,
            InvalidFeedbackError,
            NotFoundError,
            SchemaVersionError,
            StoreError,
        )
        from rankact.alignment.feedback.records.end_user import FeedbackIn
        from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

        vote = None
        try:
            body = json.loads(line)
            if line.startswith(FEEDBACK_PREFIX):
                vote = FeedbackIn.model_validate(body["body"])
            else:
                trajectory = Trajectory.model_validate(body["trajectory"])
                question_id, gold = body.get("question_id"), body.get("gold")
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            what = "vote" if line.startswith(FEEDBACK_PREFIX) else "trajectory"
            return Outcome("reject", f"not a {what}: {str(exc).splitlines()[0]}")
        try:
            if self.store is None:
                self.store = TrajectoryStore(self.name)
            if vote is not None:
                _stored, status, _replaced = self.store.add_feedback(vote, app=STORE_APP)
                return DUPLICATE if status in ("duplicate", "superseded") else DELIVERED
            self.store.add(trajectory, question_id=question_id, gold=gold)
        except ConflictError as exc:
            return DUPLICATE if vote is None else Outcome("reject", str(exc))
        except (NotFoundError, InvalidFeedbackError) as exc:  # a vote on a trajectory the store lacks
            return Outcome("reject", str(exc))
        except SchemaVersionError as exc:
            return Outcome("retry", str(exc), blocked=True)
        except StoreError as exc:  # cannot open the database: down, not the data's fault
            self._reset()
            return Outcome("retry", str(exc))
        except OperationalError as exc:
            self._reset()
            return Outcome("retry", f"database error: {str(exc.orig).splitlines()[0]}")
        except DBAPIError as exc:  # the database refused a value (e.g. NUL in PostgreSQL text)
            return Outcome("reject", f"the database refused a value: {str(exc.orig).splitlines()[0]}")
        return DELIVERED

    def _reset(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def close(self) -> None:
        self._reset()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    text = detail if isinstance(detail, str) else json.dumps(detail)
    return text[:500]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
