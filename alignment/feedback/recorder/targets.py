"""Where the recorder delivers a line: the feedback service over HTTP, or a store by URL.

Each target answers one delivery with an `Outcome` the recorder acts on:

- `delivered`: stored now (`stored_under` names the question when it is a newer version);
- `duplicate`: the target says this very line is stored already (same trajectory id and
  content; a vote sent again): delivered;
- `retry`: not stored, try again later: the target is down, slow or overloaded, or it is
  configured wrongly (`blocked`: a refused token, a Host the service does not serve, a
  redirect, a URL that is not the service), which only the operator can fix;
- `reject`: the target refused the data itself (invalid, too large, the id holds another
  trajectory, a vote's id is taken): dead-letter it with the reason, never retry.

A trajectory posted to a question that has rankings is answered "question closed" with the
next version; the target posts it there (the question `ID-vN`) and says so in the outcome.
Nothing else counts as delivered: an answer the target cannot vouch for is never acknowledged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from rankact.alignment.errors import RecorderError

# Statuses that say "later" rather than "never" (and every 5xx).
_TRANSIENT = {408, 425, 429}
# How many newer question versions one delivery follows (each means someone ranked meanwhile).
_MAX_MOVES = 8
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
    blocked: bool = False      # retry: the target's configuration, not an outage
    stored_under: str | None = None  # delivered to a newer version of a closed question


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
        if vote is not None:
            return self._post("/api/feedback", vote, timeout, vote=True)
        content, version = line, 1
        for _ in range(_MAX_MOVES):
            outcome = self._post("/api/trajectories", content, timeout, vote=False, moved=version > 1)
            if not isinstance(outcome, _Closed):
                return outcome
            if outcome.next_version <= version:  # cannot happen with our service; never loop
                return Outcome("reject", outcome.reason)
            content, version = _with_version(line, outcome.next_version), outcome.next_version
        return Outcome("retry", f"the question was closed {_MAX_MOVES} times in a row while posting; trying again")

    def _post(self, path: str, content: bytes, timeout: float, *, vote: bool, moved: bool = False
              ) -> Outcome | _Closed:
        try:
            response = self.client.post(path, content=content, timeout=timeout)
        except httpx.HTTPError as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc or 'no answer'}")
        return _outcome(response, vote=vote, moved=moved)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class _Closed:
    """The service's 409 `question_closed`: post again with `"version": next_version`."""
    next_version: int
    reason: str


def _outcome(response: httpx.Response, *, vote: bool, moved: bool) -> Outcome | _Closed:
    """What one answer of the service means for the line (see the module docstring)."""
    status = response.status_code
    body = _json_object(response)
    code = body.get("code") if body is not None else None
    reason = f"HTTP {status}: {_detail(response)}"
    if 200 <= status < 300:
        # only the service's own answer vouches that the line is stored (not a proxy's page)
        if body is None or ("status" not in body if vote else "id" not in body):
            return Outcome("retry", f"HTTP {status} from something that is not the feedback service "
                                    f"({response.headers.get('content-type') or 'no content type'}); check the URL",
                           blocked=True)
        if vote:
            return DUPLICATE if status == 200 else DELIVERED  # 200: sent before, or a newer vote is stored
        question_id = body.get("question_id")
        return Outcome("delivered", stored_under=question_id if moved and isinstance(question_id, str) else None)
    if 300 <= status < 400:
        where = response.headers.get("location") or "no Location"
        return Outcome("retry", f"HTTP {status}: the service URL redirects to {where[:200]}; point the recorder "
                                "at the final URL", blocked=True)
    if status == 409 and not vote:
        if code == "already_stored":
            return DUPLICATE
        if code == "question_closed" and isinstance(body.get("next_version"), int):
            return _Closed(body["next_version"], reason)
        return Outcome("reject", reason)  # the id holds another trajectory (or an unknown 409)
    if status in (401, 403):
        return Outcome("retry", f"the service refused the token ({reason})", blocked=True)
    if status == 400 and (code == "host_not_allowed" or "is not served here" in reason):
        return Outcome("retry", f"the service does not serve this host name ({reason})", blocked=True)
    # a route that does not exist, or a page from something else (a proxy): the URL is wrong
    if status in (400, 404, 405) and code is None and (body is None or body.get("detail") in ("Not Found",
                                                                                             "Method Not Allowed")):
        return Outcome("retry", f"no feedback service at {response.request.url} ({reason}); check the URL",
                       blocked=True)
    if status in _TRANSIENT or status >= 500:
        return Outcome("retry", reason, retry_after=_retry_after(response))
    return Outcome("reject", reason)  # 400 invalid, 404 unknown trajectory, 409 vote id taken, 413, 422, ...


def _with_version(line: bytes, version: int) -> bytes:
    """The trajectory line as posted to version `version` of its question."""
    body = json.loads(line)
    body["version"] = version
    return json.dumps(body, separators=(",", ":")).encode()  # ASCII: a lone surrogate stays escaped


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
            AlreadyStoredError,
            ConflictError,
            InvalidFeedbackError,
            NotFoundError,
            QuestionClosedError,
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
        moved = None
        try:
            if self.store is None:
                self.store = TrajectoryStore(self.name)
            if vote is not None:
                _stored, status, _replaced = self.store.add_feedback(vote, app=STORE_APP)
                return DUPLICATE if status in ("duplicate", "superseded") else DELIVERED
            for _ in range(_MAX_MOVES):
                try:
                    self.store.add(trajectory, question_id=question_id, gold=gold)
                    return Outcome("delivered", stored_under=moved)
                except QuestionClosedError as exc:  # ranked: the next version takes it
                    question_id = moved = exc.next_question_id
            return Outcome("retry", f"the question was closed {_MAX_MOVES} times in a row while storing")
        except AlreadyStoredError:
            return DUPLICATE
        except ConflictError as exc:  # the id holds another trajectory; a vote's id is taken
            return Outcome("reject", str(exc))
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

    def _reset(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def close(self) -> None:
        self._reset()


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


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
