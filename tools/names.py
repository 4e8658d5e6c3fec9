"""Which tool names an agent can use, and which sets of names it can tell apart.

The model names a tool in free text (`Action: calculator`) or in a native tool call, and the
parser matches that text exactly or, failing that, case-insensitively. So a name must
survive being written on one line and cleaned of quotes and markup, must not be a ReAct
keyword, and no two tools of one agent may differ only by case: otherwise a server's
`Calculator` would receive the calls the model meant for the built-in `calculator`.
The rule is the one OpenAI-compatible servers apply to function names, plus dots (MCP names
use them): letters, digits, `_`, `-`, `.`, at most 64 characters.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rankact.errors import RankactError

MAX_TOOL_NAME_CHARS = 64
# Starts and ends with a character the parser keeps (it strips quotes, markup, '.' and ':').
_NAME = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9_.-]*[A-Za-z0-9_-])?")
# ReAct keywords (without their colon): a tool so named reads as the format itself.
_KEYWORDS = {"thought", "action", "action_input", "observation", "final_answer"}


class ToolNameError(RankactError, ValueError):
    """A tool name the agent cannot use, or two tools it cannot tell apart."""


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:40] + "...")


def origin(tool: Any) -> str:
    """Where a tool comes from, for error messages ("MCP server 'python x.py'" or "built-in")."""
    return str(getattr(tool, "origin", "") or "built-in or application tool")


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a tool name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_TOOL_NAME_CHARS:
        return f"it has {len(name)} characters (at most {MAX_TOOL_NAME_CHARS})"
    if not _NAME.fullmatch(name):
        return "use only letters, digits, '_', '-' and '.' (no spaces or control characters), and no '.' at either end"
    if name.casefold().replace("-", "_") in _KEYWORDS:
        return "it is a ReAct keyword"
    return None


def check_tool_names(tools: Sequence[Any], *, advice: str = "") -> None:
    """ToolNameError unless every tool has a usable name and no two names are equal ignoring case.
    `advice` ends a clash message (how the caller can rename a tool)."""
    seen: dict[str, Any] = {}
    for tool in tools:
        name = getattr(tool, "name", None)
        problem = name_problem(name)
        if problem is not None:
            raise ToolNameError(f"tool name {_shown(str(name))} ({origin(tool)}) cannot be used: {problem}")
        other = seen.get(name.casefold())
        if other is not None:
            same = "the same name" if other.name == name else "names that differ only by case"
            # A prefix separates two sources; it cannot separate two tools of one server.
            fix = f"; {advice}" if advice and origin(other) != origin(tool) else ""
            raise ToolNameError(f"two tools have {same}: {_shown(other.name)} ({origin(other)}) and "
                                f"{_shown(name)} ({origin(tool)}); the model could not tell them apart{fix}")
        seen[name.casefold()] = tool
