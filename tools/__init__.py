"""Typed tools for the agent: the `@tool` decorator, `Tool`, and the built-ins.

Built-ins: `calculator` (always on: `default_tools()`), `http_get` / `HttpGetTool`
(SSRF-guarded fetch) and `ReadFileTool` (files confined to a root folder).

Note: `rankact.tools.calculator` and `rankact.tools.http_get` are the tool instances, which shadow the
submodules of the same name as package attributes; reach a module itself with
`importlib.import_module("rankact.tools.http_get")` or `from rankact.tools.http_get import resolve`.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rankact.tools.base import (
    FunctionTool,
    Tool,
    ToolArgumentError,
    ToolCitation,
    ToolError,
    ToolExecutionError,
    ToolResult,
    ToolTimeoutError,
    tool,
)
from rankact.tools.calculator import calculator
from rankact.tools.files import ReadFileTool
from rankact.tools.http_get import HttpGetTool, http_get

__all__ = [
    "FunctionTool",
    "HttpGetTool",
    "ReadFileTool",
    "Tool",
    "ToolArgumentError",
    "ToolCitation",
    "ToolError",
    "ToolExecutionError",
    "ToolResult",
    "ToolTimeoutError",
    "builtin_names",
    "calculator",
    "default_tools",
    "get_builtin",
    "http_get",
    "tool",
]

def default_tools() -> list[Tool]:
    """The tools an agent gets when none are given: safe without configuration."""
    return [calculator]


def builtin_names() -> list[str]:
    return ["calculator", "http_get", "read_file", "search"]


def get_builtin(name: str, **options: Any) -> Tool:
    """A built-in tool by name. Options configure tools that need it:
    `http_get(allow_private=..., max_bytes=..., timeout=...)`, `read_file(root=..., max_bytes=...)`
    (root defaults to the current folder); `search` is built by `rankact.tools.search.search_tool(**options)`."""
    if name == "calculator":
        if options:
            raise ValueError("calculator takes no options")
        return calculator
    if name == "http_get":
        return HttpGetTool(**options) if options else http_get
    if name == "read_file":
        return ReadFileTool(options.pop("root", Path.cwd()), **options)
    if name == "search":
        search = importlib.import_module("rankact.tools.search")
        return search.search_tool(**options)
    raise KeyError(f"unknown built-in tool {name!r}; built-ins: {', '.join(builtin_names())}")
