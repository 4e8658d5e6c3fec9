"""What a tool call turns into: the observation the model reads next, and the step's error.

Both loops (ReAct text in `rankact.agent.loop`, native tool calls in
`rankact.agent.native_tools`) use this one path, so a bad argument, an unknown tool, a tool
exception and a timeout read the same to the model and are recorded the same in the
trajectory: `Error: <message>. <hint>`, never the answer.
"""
from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

from rankact.agent import events as ev
from rankact.agent.errors import RankactError
from rankact.agent.trajectory import Step, StepError

MAX_OBSERVATION_CHARS = 2000
REPEAT_HINT = "(You already ran this exact action. Use its result, or give the Final Answer.)"
LOOP_MESSAGE = "You keep repeating the same action with the same input; it was not run again."
UNKNOWN_TOOL_HINT = "Call one of the listed tools."
OTHER_FAILURE_HINT = "Try a different input or tool, or answer."


class UnknownToolError(RankactError, LookupError):
    """A native tool call named a tool the agent does not have (ReAct text: a parse error)."""


def canonical(value: Any) -> str:
    """One spelling per value, so equal inputs compare equal however they were written."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def shorten(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " ...(truncated)"


def error_kind(exc: BaseException) -> str:
    """The `StepError.kind` of a failed call: unknown_tool | validation | timeout | tool."""
    # On call, not at import: `rankact.tools` pulls in httpx, and the CLI imports the loop.
    from rankact.tools.base import ToolArgumentError, ToolTimeoutError

    if isinstance(exc, UnknownToolError):
        return "unknown_tool"
    if isinstance(exc, ToolArgumentError):
        return "validation"
    if isinstance(exc, ToolTimeoutError | TimeoutError | concurrent.futures.TimeoutError):
        return "timeout"
    return "tool"


def failure(exc: BaseException, *, fix: str) -> tuple[StepError, str]:
    """A failed call as the step error it records and the observation the model reads; `fix`
    is the hint for bad arguments (each format names its input its own way)."""
    kind = error_kind(exc)
    message = str(exc) or type(exc).__name__
    hint = {"validation": fix, "unknown_tool": UNKNOWN_TOOL_HINT}.get(kind, OTHER_FAILURE_HINT)
    return StepError(kind=kind, message=message), f"Error: {message}. {hint}"


def observe(step: Step, result: Any, *, fix: str, repeated: bool = False) -> Iterator[ev.Event]:
    """Record a call's result (a ToolResult, or the exception it ended with) on `step` and yield
    the events it makes: an Error for a failure, then the Observation."""
    if isinstance(result, BaseException):
        step.error, step.observation = failure(result, fix=fix)
        yield ev.Error(index=step.index, kind=step.error.kind, message=step.error.message)
    else:
        step.observation = shorten(result.text) + (" " + REPEAT_HINT if repeated else "")
    yield ev.Observation(index=step.index, text=step.observation, is_error=step.error is not None)


class RepeatCounter:
    """How many times in a row the same action was asked for with the same (validated) input."""

    def __init__(self) -> None:
        self.last: tuple[str, str] | None = None
        self.repeats = 0

    def count(self, action: str, action_input: Any) -> int:
        key = (action, canonical(action_input))
        self.repeats = self.repeats + 1 if key == self.last else 1
        self.last = key
        return self.repeats
