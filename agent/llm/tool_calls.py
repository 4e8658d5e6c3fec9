"""Native tool calls in the OpenAI wire format: the `tools` a request offers, the calls a reply
holds, and the calls a stream spreads over many deltas.

A streamed call arrives in pieces keyed by `index`: the first delta carries `id` and the
function `name`, later ones append to `arguments` (llama.cpp often sends a whole call in one
delta). Servers differ in small ways, so missing ids get stable ones (`call_<index>`) and
arguments sent as a JSON object (Ollama) are turned back into JSON text. Arguments stay
unvalidated text here: the agent validates them against the tool's schema before a call.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rankact.agent.llm.base import NativeToolCall


def tool_specs(tools: Iterable[Any]) -> list[dict]:
    """The `tools` field of a chat request, from each tool's JSON Schema (`Tool.json_schema`)."""
    return [{"type": "function", "function": tool.json_schema()} for tool in tools]


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_tool_calls(raw: Any) -> list[NativeToolCall] | None:
    """The calls of a non-streamed reply's `message.tool_calls` (None when there are none)."""
    if not raw:
        return None
    if not isinstance(raw, list):
        raise TypeError("tool_calls is not a list")
    calls = []
    for i, item in enumerate(raw):
        function = item.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TypeError(f"tool call {i} has no function name")
        calls.append(NativeToolCall(id=str(item.get("id") or f"call_{i}"), name=name,
                                    arguments=_arguments(function.get("arguments"))))
    return calls


class ToolCallDeltas:
    """Assembles streamed `delta.tool_calls` pieces into whole calls."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, deltas: Sequence[dict]) -> None:
        for position, delta in enumerate(deltas):
            index = int(delta.get("index", position))
            part = self._parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if delta.get("id"):
                part["id"] = str(delta["id"])
            function = delta.get("function") or {}
            if function.get("name"):
                part["name"] += function["name"]
            part["arguments"] += _arguments(function.get("arguments"))

    def calls(self) -> list[NativeToolCall] | None:
        if not self._parts:
            return None
        out = []
        for index in sorted(self._parts):
            part = self._parts[index]
            if not part["name"]:
                raise TypeError(f"streamed tool call {index} has no function name")
            out.append(NativeToolCall(id=part["id"] or f"call_{index}", name=part["name"],
                                      arguments=part["arguments"]))
        return out


def wire_calls(calls: Sequence[NativeToolCall]) -> list[dict]:
    """An assistant message's `tool_calls`, for the next request's history."""
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
