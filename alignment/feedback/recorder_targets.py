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

from alignment.errors import RecorderError

# Statuses that say "later" rather than "never".
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}


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
        try:
            response = self.client.post("/api/trajectories", content=line, timeout=timeout)
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc or 'no answer'}")
        status = response.status_code
        if status in (200, 201):
            return DELIVERED
        reason = f"HTTP {status}: {_detail(response)}"
        if status == 409:
            return DUPLICATE  # the only conflict this endpoint has: the id is stored already
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

        from agent.trajectory import Trajectory
        from alignment.errors import ConflictError, SchemaVersionError, StoreError
        from alignment.feedback.store import TrajectoryStore

        try:
            body = json.loads(line)
            trajectory = Trajectory.model_validate(body["trajectory"])
            question_id, gold = body.get("question_id"), body.get("gold")
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            return Outcome("reject", f"not a trajectory: {str(exc).splitlines()[0]}")
        try:
            if self.store is None:
                self.store = TrajectoryStore(self.name)
            self.store.add(trajectory, question_id=question_id, gold=gold)
        except ConflictError:
            return DUPLICATE
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
