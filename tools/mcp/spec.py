"""An MCP server as the user writes it (`--mcp`), and as messages may name it.

A server is a command line (run over stdio) or an http(s) URL, optionally preceded by
options for its toolset, the form the command line uses:

    python my_server.py --api-key=...                 a command
    prefix=gh_:npx -y @org/server-github              its tools become gh_<name>
    prefix=gh_,max_tools=500:http://host:8000/mcp     a URL, two options

Command lines and URLs carry secrets (`--api-key=...`, `?token=...`, `user:pass@`), and a
server's name goes into observations, stored trajectories (shown to annotators, exported)
and spans. So messages name a server by `label`: the executable and the script it runs,
never the other arguments; a URL without its user, query and fragment.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from rankact.tools.base import ToolError

# Options that may come before the server, and how each is read.
_OPTIONS = {"prefix": str, "max_tools": int}
_HEAD = re.compile(r"(?P<opts>(?:prefix|max_tools)=[^,:]*(?:,(?:prefix|max_tools)=[^,:]*)*):(?P<server>.*)", re.DOTALL)
# Scripts an interpreter runs: the one argument a label keeps.
_SCRIPT_SUFFIXES = {".py", ".js", ".mjs", ".cjs", ".ts", ".rb", ".sh", ".pl", ".jar", ".php"}


class MCPSpecError(ToolError, ValueError):
    """A server spec that cannot be read (a bad option, an unterminated quote, no command)."""


def is_url(server: str) -> bool:
    return server.startswith(("http://", "https://"))


def split_command(command: str) -> list[str]:
    """The argv of a command line; MCPSpecError (with a label, not the line) if it cannot be split."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # "No closing quotation": echo no part of the line, it may hold a secret
        raise MCPSpecError(f"cannot read the MCP server command: {exc} (check its quotes)") from None
    if not argv:
        raise MCPSpecError("empty MCP server command")
    return argv


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """(server, toolset options) from `[prefix=P][,max_tools=N]:SERVER` or a plain SERVER."""
    match = _HEAD.fullmatch(spec.strip())
    if match is None:
        return spec, {}
    options: dict[str, Any] = {}
    for item in match.group("opts").split(","):
        key, _, value = item.partition("=")
        try:
            options[key] = _OPTIONS[key](value)
        except ValueError:
            raise MCPSpecError(f"MCP server option {key}={value!r} is not a number") from None
    if not re.fullmatch(r"[A-Za-z0-9_.-]*", options.get("prefix", "")):
        raise MCPSpecError(f"MCP tool prefix {options['prefix']!r}: use only letters, digits, '_', '-' and '.'")
    return match.group("server").strip(), options


def label(server: str | Sequence[str]) -> str:
    """How messages name `server`: no argument that may hold a secret."""
    if isinstance(server, str) and is_url(server.strip()):
        parts = urlsplit(server.strip())
        host = parts.hostname or ""
        if ":" in host:  # IPv6
            host = f"[{host}]"
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    if isinstance(server, str):
        try:
            argv = shlex.split(server)
        except ValueError:
            argv = server.split()
    else:
        argv = [str(a) for a in server]
    if not argv:
        return "(empty command)"
    shown = [PurePath(argv[0]).name or argv[0]]
    script = next((a for a in argv[1:] if not a.startswith("-")), None)
    if script is not None and PurePath(script).suffix.lower() in _SCRIPT_SUFFIXES and "=" not in script:
        shown.append(PurePath(script).name)
    return " ".join(shown)


def hidden_parts(server: str | Sequence[str]) -> list[str]:
    """The pieces of `server` its label leaves out (arguments; a URL's user, query, fragment),
    longest first: `redact` removes them from text the server or its transport wrote."""
    if isinstance(server, str) and is_url(server.strip()):
        parts = urlsplit(server.strip())
        pieces = [server.strip(), parts.query, parts.fragment, parts.username or "", parts.password or ""]
        pieces += [value for _, value in parse_qsl(parts.query)]
    else:
        try:
            argv = split_command(server) if isinstance(server, str) else [str(a) for a in server]
        except MCPSpecError:
            argv = str(server).split()
        shown = set(label(argv).split())
        pieces = [a for a in argv[1:] if PurePath(a).name not in shown]
        pieces += [a.partition("=")[2] for a in pieces if "=" in a]
        if isinstance(server, str):
            pieces.append(server)
    return sorted({p for p in pieces if len(p) >= 4}, key=len, reverse=True)


def redact(text: str, server: str | Sequence[str]) -> str:
    """`text` without the parts of `server` that may hold secrets (each becomes `[redacted]`)."""
    for piece in hidden_parts(server):
        text = text.replace(piece, "[redacted]")
    return text
