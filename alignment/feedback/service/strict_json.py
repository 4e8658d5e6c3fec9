"""Strict JSON in: a request body the service accepts can always be stored and read back.

Python's `json` (what FastAPI parses with) accepts `NaN` and `Infinity`, which the store
would write as null and never read back as a number; it also decodes `"\\ud800"` to a lone
surrogate that no database can store. The request gate (`request_gate.py`)
parses every JSON request body here, strictly and once, and answers 422 with a message for:
anything that is not JSON (NaN, Infinity, 1e400, invalid UTF-8, lone surrogates) and integers
beyond ±(2^53 - 1), the range every JSON reader (the page's JavaScript included) represents
exactly. Nesting is limited to 200 levels. Only `application/json` and `application/*+json`
bodies are JSON here (`is_json_media_type`).
"""
from __future__ import annotations

import math
import re
from typing import Any

from pydantic_core import from_json

from rankact.alignment.errors import RankactError

MAX_SAFE_INT = 2**53 - 1
_NOT_A_NUMBER = re.compile(rb"-?(NaN|Infinity)")
_POSITION = re.compile(r"line (\d+) column (\d+)")


class NotStrictJSON(RankactError, ValueError):
    """The body is not strict JSON; the message says why, in one line a client can act on."""


def parse_strict_json(body: bytes) -> Any:
    """The value `body` holds, or NotStrictJSON. CPU-bound: callers off the event loop run it
    in a thread."""
    try:
        value = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise NotStrictJSON(_explain(body, str(exc))) from None
    problem = _out_of_range(value)
    if problem is not None:
        raise NotStrictJSON(problem)
    return value


def strict_json_problem(body: bytes) -> str | None:
    """Why `body` is not strict JSON, or None when it is."""
    try:
        parse_strict_json(body)
    except NotStrictJSON as exc:
        return str(exc)
    return None


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/<anything>+json`, parameters (charset) allowed.
    Not "text/plain; a=json": a web page may send that cross-site without asking first."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


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
