"""The request gate: no request body is read before its sender is known and allowed to send it.

FastAPI reads and parses a route's body before it runs the route's dependencies, the token
check included, and it parses on the event loop. So the gate is a plain ASGI middleware in
front of the routes (behind the Host check), where nothing has been read yet. For a request to
a route that takes a body (`POST /api/trajectories`, `/api/rankings`, `/api/feedback`), in order:

1. the token and its role (the route's own `role_in` roles): 401 / 403;
2. the Content-Type: `application/json` or `application/*+json` only: 415;
3. the account's write limits (`quotas.py`): 429 with `Retry-After`;
4. the size: Content-Length above the route's limit (`limits.py`) is 413 before any byte is
   read; a body that grows past it while streaming is 413 as soon as it does; a body that
   does not arrive within the time limit is 408;
5. strict JSON (`strict_json.py`), parsed once and validated against the route's body model,
   both in a worker thread: 422 (validating a large body takes as long as parsing it).

The route then gets the validated model (`GatedRoute`), which FastAPI takes as it is, not the
bytes to parse and validate again on the event loop. Any other
request (unknown paths included) goes on with an empty body: no route but the gated ones ever
reads one, so an unknown path is a 404 whatever was sent. A refusal sent before the body was
read closes the connection, so the rest of the body is not waited for.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankact.alignment.errors import RankactError
from rankact.alignment.feedback.service.auth import GATE_ACCOUNT_KEY, authorize, bearer_token
from rankact.alignment.feedback.service.limits import ServiceLimits
from rankact.alignment.feedback.service.quotas import Refusal, WriteQuotas
from rankact.alignment.feedback.service.strict_json import (
    NotStrictJSON,
    is_json_media_type,
    parse_strict_json,
)
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

PARSED_BODY_KEY = "rankact.parsed_body"


@dataclass(frozen=True)
class BodyRoute:
    route: APIRoute
    roles: tuple[str, ...]
    max_bytes: int
    model: type[BaseModel] | None  # the route's one body model; None: FastAPI validates the body

    def parsed(self, body: bytes) -> Any:
        """The body as the route takes it: NotStrictJSON or _InvalidBody if it cannot be.
        CPU-bound: runs in a worker thread."""
        value = parse_strict_json(body)
        if self.model is None:
            return value
        try:
            return self.model.model_validate(value)
        except ValidationError as exc:
            # the app's own 422 shape (app.py: _validation), without the echoed input
            raise _InvalidBody([{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                                for e in exc.errors(include_url=False)]) from None


def body_routes(routes: Iterable[Any], limits: ServiceLimits) -> list[BodyRoute]:
    """Every route that takes a body, with the roles its `role_in` dependency admits. A body
    route without one is a bug: it would read bodies from anyone, so it is refused here."""
    found = []
    for route in routes:
        if not isinstance(route, APIRoute) or route.body_field is None:
            continue
        roles = [d.call.roles for d in route.dependant.dependencies if hasattr(d.call, "roles")]
        if len(roles) != 1:
            raise RuntimeError(f"the body route {route.path} must name its roles with one role_in dependency")
        params = route.dependant.body_params
        model = params[0].field_info.annotation if len(params) == 1 else None
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        found.append(BodyRoute(route, tuple(roles[0]), limits.body_limit(route.path), model if is_model else None))
    return found


class GatedRoute(APIRoute):
    """A route whose `request.json()` is the value the gate parsed (no second parse on the loop)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def with_parsed_body(request: Request):
            return await handler(_ParsedBodyRequest(request.scope, request.receive))

        return with_parsed_body


class _ParsedBodyRequest(Request):
    async def json(self) -> Any:
        if PARSED_BODY_KEY in self.scope:
            return self.scope[PARSED_BODY_KEY]
        return await super().json()


class _InvalidBody(RankactError):  # control flow inside the gate, never shown
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid body")
        self.errors = errors


class _Refused(RankactError):  # control flow inside the gate, never shown
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class RequestGate:
    def __init__(self, app: ASGIApp, *, store: TrajectoryStore, routes: list[BodyRoute], limits: ServiceLimits,
                 quotas: WriteQuotas) -> None:
        self.app, self.store, self.routes, self.limits, self.quotas = app, store, routes, limits, quotas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gated = next((r for r in self.routes if r.route.matches(scope)[0] == Match.FULL), None)
        if gated is None:
            await self.app(scope, _without_body(receive), _closing_if_body_unread(scope, send))
            return
        try:
            body, account = await self._admit(gated, scope, receive)
            value = await anyio.to_thread.run_sync(gated.parsed, body) if body.strip() else None
        except _Refused as refused:
            await _answer(send, refused.status, refused.detail, refused.headers,
                          close=_announces_body(scope))
            return
        except NotStrictJSON as exc:
            await _answer(send, 422, str(exc))
            return
        except _InvalidBody as exc:
            await _answer(send, 422, exc.errors)
            return
        except _ClientGone:
            return
        scope[GATE_ACCOUNT_KEY] = account
        if value is not None:
            scope[PARSED_BODY_KEY] = value
        await self.app(scope, _replay(body, receive), send)

    async def _admit(self, gated: BodyRoute, scope: Scope, receive: Receive) -> tuple[bytes, Any]:
        headers = Headers(scope=scope)
        try:
            account = await anyio.to_thread.run_sync(
                authorize, self.store, bearer_token(headers.get("authorization")), gated.roles)
        except HTTPException as exc:
            raise _Refused(exc.status_code, str(exc.detail), dict(exc.headers or {})) from None
        content_type = headers.get("content-type")
        if not is_json_media_type(content_type):
            shown = repr(content_type[:80]) if content_type else "none"
            raise _Refused(415, f"send the body as JSON with 'Content-Type: application/json' (got {shown})")
        announced = _content_length(headers)
        if announced is not None and announced > gated.max_bytes:
            raise _Refused(413, _too_large(gated, f"{announced} bytes were announced"))
        _raise_if(self.quotas.admit(account.name, announced or 0))
        return await self._read_body(gated, account.name, receive), account

    async def _read_body(self, gated: BodyRoute, account: str, receive: Receive) -> bytes:
        chunks, size = [], 0
        with anyio.move_on_after(self.limits.body_seconds) as deadline:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise _ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > gated.max_bytes:
                    raise _Refused(413, _too_large(gated, f"more than {gated.max_bytes} bytes arrived"))
                _raise_if(self.quotas.take_bytes(account, len(chunk)))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            raise _Refused(408, f"the body did not arrive within {_plain(self.limits.body_seconds)} s")
        return b"".join(chunks)


class _ClientGone(RankactError):  # control flow inside the gate, never shown
    pass


def _raise_if(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise _Refused(429, refusal.detail, {"Retry-After": str(refusal.retry_after)})


def _too_large(gated: BodyRoute, what: str) -> str:
    return (f"the body is too large: {what}; {gated.route.path} takes at most {gated.max_bytes} bytes "
            f"(rankact serve --max-body-bytes)")


def _plain(seconds: float) -> str:
    return str(int(seconds)) if math.isclose(seconds, round(seconds)) else f"{seconds:g}"


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return max(int(value), 0)
    except ValueError:
        raise _Refused(400, "Content-Length is not a number") from None


def _announces_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers


def _without_body(receive: Receive) -> Receive:
    """The route sees an empty body; later calls (a streaming response listening for the
    client going away) get the real messages, whose bytes nobody keeps."""
    first = True

    async def receive_nothing() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return receive_nothing


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _closing_if_body_unread(scope: Scope, send: Send) -> Send:
    if not _announces_body(scope):
        return send

    async def send_and_close(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return send_and_close


async def _answer(send: Send, status: int, detail: str | list[Any], headers: dict[str, str] | None = None,
                  close: bool = False) -> None:
    payload = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
