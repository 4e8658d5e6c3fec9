"""Typed tools for the agent: the `@tool` decorator, `Tool`, and the built-ins."""
from tools.base import (
    Tool,
    ToolArgumentError,
    ToolCitation,
    ToolError,
    ToolExecutionError,
    ToolResult,
    ToolTimeoutError,
    tool,
)

__all__ = [
    "Tool",
    "ToolArgumentError",
    "ToolCitation",
    "ToolError",
    "ToolExecutionError",
    "ToolResult",
    "ToolTimeoutError",
    "tool",
]
