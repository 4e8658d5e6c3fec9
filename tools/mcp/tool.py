"""`MCPTool`: one tool of an MCP server as a rankact `Tool`.

The server's JSON Schema is the tool's schema: the prompt shows it, guided decoding fills
its argument slots from it, and arguments are validated against it (with `jsonschema`)
before anything is sent, so a bad call is a validation observation and costs no round trip.
The schema is the server's, so validation runs with a deadline (`validation`), and what the
server writes (descriptions, enum values, error text) is cut before it reaches a prompt.
A result the server flags `isError` becomes a `ToolExecutionError` observation.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from rankact.tools.base import Tool, ToolArgumentError, ToolExecutionError, ToolResult, _strip_titles
from rankact.tools.limits import bounded


class ToolServer(Protocol):
    """What a tool needs of its server's session (`MCPToolset`): a name to show, and a call.
    A protocol rather than an import, so tool and connection do not import each other."""

    label: str

    def call(self, name: str, arguments: dict[str, Any], timeout: float | None) -> Any: ...


# A description goes into every prompt; an enum is shown by its first values.
MAX_DESCRIPTION_CHARS = 1000
_ENUM_SHOWN = 8


class MCPArguments(BaseModel):
    """Arguments already checked against the server's schema; kept as the plain JSON given."""

    model_config = ConfigDict(extra="allow")


def _schema_type(node: dict[str, Any]) -> str:
    """A short type for the prompt's signature line: integer, 'a' | 'b', list[string], Point."""
    if "enum" in node and isinstance(node["enum"], list):
        shown = [bounded(json.dumps(v), 40) for v in node["enum"][:_ENUM_SHOWN]]
        return " | ".join(shown + (["..."] if len(node["enum"]) > _ENUM_SHOWN else []))
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " | ".join(_schema_type(n) for n in node[key] if isinstance(n, dict))
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list[{_schema_type(node['items'])}]"
    return str(kind)


class MCPTool(Tool):
    """Calls `remote_name` on the toolset's server. Built by `MCPToolset`, not by hand."""

    args_model = MCPArguments

    def __init__(self, toolset: ToolServer, *, remote_name: str, name: str, description: str,
                 input_schema: dict[str, Any], timeout: float | None) -> None:
        from rankact.tools.mcp.validation import VALIDATION_SECONDS, bounded_validator  # jsonschema: on use

        self.toolset = toolset
        self.remote_name = remote_name
        self.name = name
        self.description = bounded(description, MAX_DESCRIPTION_CHARS)
        self.timeout = timeout
        self.validation_seconds = VALIDATION_SECONDS
        self.input_schema = _strip_titles(dict(input_schema))
        self.input_schema.setdefault("type", "object")
        self.input_schema.setdefault("properties", {})
        self._validator: Any = bounded_validator(self.input_schema)  # None: the server validates alone

    @property
    def origin(self) -> str:
        """Where the tool comes from, for messages (the server's label: no arguments)."""
        return f"MCP server {self.toolset.label!r}"

    # ---- the schema, as the prompt and guided decoding see it ---------------------------
    def json_schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.input_schema}

    @property
    def _properties(self) -> dict[str, Any]:
        props = self.input_schema.get("properties")
        return props if isinstance(props, dict) else {}

    def _required(self) -> list[str]:
        return [n for n in self.input_schema.get("required", []) if isinstance(n, str)]

    @property
    def single_string_input(self) -> bool:
        required = self._required()
        return len(required) == 1 and self._properties.get(required[0], {}).get("type") == "string"

    def _params(self) -> list[str]:
        required = set(self._required())
        parts = []
        for pname, node in self._properties.items():
            piece = f"{pname}: {_schema_type(node if isinstance(node, dict) else {})}"
            if pname not in required:
                piece += f" = {node['default']!r}" if isinstance(node, dict) and "default" in node else " = None"
            parts.append(piece)
        return parts

    def _args_hint(self) -> str:
        return "{" + ", ".join(f'"{p.split(":", 1)[0]}":{p.split(":", 1)[1]}' for p in self._params()) + "}"

    def render_signature(self) -> str:
        desc = " ".join(self.description.split())
        line = f"{self.name}({', '.join(self._params())})"
        return f"{line} - {desc}" if desc else line

    # ---- validation and the call --------------------------------------------------------
    def validate(self, raw: dict[str, Any] | str | BaseModel | None) -> BaseModel:
        if isinstance(raw, MCPArguments):
            return raw
        data = self._raw_arguments(raw)
        if self._validator is not None:
            from rankact.tools.mcp.validation import ArgumentsTooSlow, argument_errors

            try:
                errors = argument_errors(self._validator, data, self.validation_seconds)
            except ArgumentsTooSlow:
                raise ToolArgumentError(
                    f"invalid arguments for tool '{self.name}': checking them against the server's schema took "
                    f"longer than {self.validation_seconds:g} s; send shorter or simpler values. "
                    f"Expected {self._args_hint()}") from None
            errors.sort(key=lambda e: [(type(p).__name__, p) for p in e.absolute_path])
            if errors:
                problems = [f"{'.'.join(str(p) for p in e.absolute_path) or '(arguments)'}: {e.message}"
                            for e in errors]
                raise ToolArgumentError(
                    bounded(f"invalid arguments for tool '{self.name}': {'; '.join(problems)}. "
                            f"Expected {self._args_hint()}"),
                    errors=[{"loc": list(e.absolute_path), "msg": e.message, "type": e.validator} for e in errors],
                )
        return MCPArguments.model_validate(data)

    def _kwargs(self, args: BaseModel) -> dict[str, Any]:
        return dict(args.model_extra or {})

    def run(self, **kwargs: Any) -> ToolResult:
        return to_result(self.toolset.call(self.remote_name, kwargs, self.timeout), self.name)


def to_result(result: Any, tool_name: str) -> ToolResult:
    """An MCP `CallToolResult` as observation text; `isError` raises ToolExecutionError.

    Text blocks are joined; images and audio are named, not inlined (a text model cannot
    read them); resources show their text or their URI; a result with only structured
    content shows it as JSON."""
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}]".replace(" ]", "]"))
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        elif kind == "resource":
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        else:
            parts.append(f"[{kind or 'content'}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    text = "\n".join(parts)
    if result.is_error:  # cut here: an error is not cut by the agent as a result is
        raise ToolExecutionError(bounded(text) or f"tool '{tool_name}' reported an error")
    return ToolResult(text=text)
