"""Argument validation against an MCP server's JSON Schema, in bounded time and bounded text.

The schema is the server's, so it is untrusted input: its `pattern` and `patternProperties`
regular expressions run on the model's arguments in the agent's own thread, and stdlib `re`
backtracks (`^(a+)+$` against 31 `a`s and a `!` took 95 s). A thread deadline cannot help:
`re` holds the GIL and cannot be interrupted. So:

- every regex keyword runs on the `regex` module with its `timeout` (it checks the clock
  while matching, and needs no subprocess); `regex` is close enough to `re` for the ECMA 262
  subset JSON Schema patterns use;
- every other keyword checks one deadline for the whole validation before it runs, so
  a schema that explodes combinatorially (nested anyOf over a deep instance) stops too;
- errors are counted and cut: a 200,000-value `enum` makes a 4 MB message otherwise.

Over the deadline the arguments are refused with a validation error (`ArgumentsTooSlow`): the
model can send something simpler, and nothing unchecked reaches the server.

`unevaluatedProperties` next to `patternProperties` evaluates the patterns inside jsonschema
itself, where no timeout can reach; a tool whose schema has both is not validated locally
(`bounded_validator` returns None), as for a schema jsonschema cannot read: the server checks.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import regex
from jsonschema import ValidationError
from jsonschema.validators import extend, validator_for

from rankact.errors import RankactError
from rankact.tools.limits import bounded

VALIDATION_SECONDS = 1.0
MAX_ERRORS = 10  # reported per call; the first ones are what the model needs to fix
MAX_ERROR_CHARS = 300  # per error message

_deadline = threading.local()  # validations run in several threads at once (native tool calls)


class ArgumentsTooSlow(RankactError):
    """Validation went past its deadline (caught by the tool, which refuses the arguments)."""


def _remaining() -> float:
    left = getattr(_deadline, "at", None)
    if left is None:
        return VALIDATION_SECONDS
    left -= time.monotonic()
    if left <= 0:
        raise ArgumentsTooSlow
    return left


def _search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=_remaining()) is not None
    except TimeoutError:
        raise ArgumentsTooSlow from None
    except regex.error:
        return True  # a pattern `regex` cannot read: the server checks it


def _pattern(validator: Any, patrn: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and isinstance(patrn, str) and not _search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            if _search(patrn, key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _additional(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """jsonschema's `additionalProperties`, with the pattern match above."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance if k not in properties and not any(_search(p, k) for p in patterns)]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        shown = ", ".join(repr(k) for k in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({shown} unexpected)")


def _with_deadline(keyword: Callable[..., Any]) -> Callable[..., Any]:
    def checked(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        _remaining()
        return keyword(validator, value, instance, schema)

    return checked


def bounded_validator(schema: dict[str, Any]) -> Any:
    """A jsonschema validator for `schema` whose keywords keep the deadline, or None when the
    schema cannot be checked here (jsonschema cannot read it, or it needs unbounded regexes)."""
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except Exception:  # noqa: BLE001 - a schema jsonschema cannot read: the server validates alone
        return None
    text = json.dumps(schema)
    if '"unevaluatedProperties"' in text and '"patternProperties"' in text:
        return None
    keywords = {name: _with_deadline(fn) for name, fn in cls.VALIDATORS.items()}
    keywords.update({"pattern": _pattern, "patternProperties": _pattern_properties,
                     "additionalProperties": _additional})
    return extend(cls, keywords)(schema)


def argument_errors(validator: Any, data: Any, seconds: float = VALIDATION_SECONDS) -> list[ValidationError]:
    """Up to MAX_ERRORS errors of `data`, each message cut to MAX_ERROR_CHARS; ArgumentsTooSlow
    past `seconds`."""
    _deadline.at = time.monotonic() + seconds
    try:
        errors = []
        for error in validator.iter_errors(data):
            error.message = bounded(error.message, MAX_ERROR_CHARS)
            errors.append(error)
            if len(errors) >= MAX_ERRORS:
                break
        return errors
    except RecursionError:  # a deep instance under a recursive schema
        raise ArgumentsTooSlow from None
    finally:
        _deadline.at = None
