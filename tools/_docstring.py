"""Split a function docstring into a summary and per-argument descriptions.

Understands the two styles people actually write: Google (`Args:` section with
`name (type): text` lines) and reST (`:param name: text`). Pure function, no imports
of ours, so the decorator stays small and this stays testable on its own.
"""
from __future__ import annotations

import inspect
import re

# Section headers that end the summary in Google/NumPy-ish docstrings.
_SECTION = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|returns?|yields?|raises?|"
    r"examples?|notes?|see also|attributes|todo|warnings?)\s*:\s*$",
    re.IGNORECASE,
)
_ARG_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
# `name (type): text`, `name: text`, `*name: text`
_GOOGLE_ARG = re.compile(r"^\*{0,2}(?P<name>[A-Za-z_]\w*)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")
# `:param name: text` or `:param type name: text`
_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<text>.*)$")
_REST_FIELD = re.compile(r"^:\w+")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return (summary, {argument name: description}) for a docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    in_summary = True
    section: str | None = None
    current: str | None = None  # argument whose description continues on the next lines
    arg_indent = 0

    for line in lines:
        stripped = line.strip()
        header = _SECTION.match(stripped)
        rest = _REST_PARAM.match(stripped)
        if header and _indent(line) == 0:
            in_summary = False
            section = header.group(1).lower()
            current = None
            arg_indent = -1
            continue
        if rest:
            in_summary = False
            section = "rest"
            current = rest.group("name")
            args[current] = rest.group("text").strip()
            continue
        if _REST_FIELD.match(stripped):  # :returns:, :raises ...: end the current param
            in_summary = False
            section, current = "rest", None
            continue
        if in_summary:
            summary.append(line)
            continue
        if not stripped:
            current = None if section in _ARG_SECTIONS else current
            continue
        if section in _ARG_SECTIONS:
            indent = _indent(line)
            match = _GOOGLE_ARG.match(stripped)
            if match and (arg_indent < 0 or indent <= arg_indent):
                arg_indent = indent
                current = match.group("name")
                args[current] = match.group("text").strip()
            elif current is not None:  # continuation line
                args[current] = (args[current] + " " + stripped).strip()
        elif section == "rest" and current is not None:
            args[current] = (args[current] + " " + stripped).strip()

    text = "\n".join(summary).strip()
    return text, args
