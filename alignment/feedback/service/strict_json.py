"""Strict JSON in: a request body the service accepts can always be stored and read back.

Python's `json` (what FastAPI parses with) accepts `NaN` and `Infinity`, which the store
would write as null and never read back as a number; it also decodes `"\\ud800"` to a lone
surrogate that no database can store. This middleware parses every JSON request body first,
strictly, and answers 422 with a message for: anything that is not JSON (NaN, Infinity,
1e400, invalid UTF-8, lone surrogates) and integers beyond ±(2^53 - 1), the range every JSON
reader (the page's JavaScript included) represents exactly. Nesting is limited to 200 levels.
"""
from __future__ import annotations

import json
import math
import re

from pydantic_core import from_json
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_SAFE_INT = 2**53 - 1
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_NOT_A_NUMBER = re.compile(rb"-?(NaN|Infinity)")
_POSITION = re.compile(r"line (\d+) column (\d+)")


def strict_json_problem(body: bytes) -> str | None:
    """Why `body` is not strict JSON, or None when it is."""
    try:
        value = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return _explain(body, str(exc))
    return _out_of_range(value)


def _explain(body: bytes, message: str) -> str:
    if "surrogate" in message or "hex escape" in message:
        return f"text holds a lone surrogate (\\ud800-\\udfff without its pair), not valid Unicode ({message})"
    found = _POSITION.search(message)
    if found:  # point at a NaN / Infinity when that is what stopped the parser
        line, column = int(found.group(1)), int(found.group(2))
        lines = body.split(b"\n")
        near = lines[line - 1][max(column - 12, 0):column + 10] if line <= len(lines) else b""
        if _NOT_A_NUMBER.search(near):
            return f"NaN and Infinity are not JSON numbers ({message}); send a finite number"
    return f"the body is not strict JSON: {message}"


def _out_of_range(value: object) -> str | None:
    stack: list[tuple[object, str]] = [(value, "body")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            if abs(item) > MAX_SAFE_INT:
                return f"{where}: integer {_short(item)} is outside ±(2^53 - 1), the range JSON readers keep exactly"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where}: a number too large for a 64-bit float is not allowed"
        elif isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def _short(number: int) -> str:
    text = str(number) if number.bit_length() < 4000 else "(thousands of digits)"
    return text if len(text) <= 40 else text[:20] + "..." + text[-5:]


class StrictJSONMiddleware:
    """Refuse a JSON request body that is not strict JSON, before any route sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type", "")
        if content_type and "json" not in content_type.lower():
            await self.app(scope, receive, send)  # the route refuses it with its own 422
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = strict_json_problem(body) if body.strip() else None
        if problem is not None:
            await _answer_422(send, problem)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _answer_422(send: Send, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
