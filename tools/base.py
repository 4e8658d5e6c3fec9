"""Typed tools: `Tool`, the `@tool` decorator, results and the errors the agent turns into observations.

A tool is called with raw model output (a dict, a JSON string, or plain text for tools
with a single string argument). `invoke`/`ainvoke` validate it against the tool's pydantic
argument model, run it under a timeout and return a `ToolResult`; every failure comes out
as a `ToolError` subclass whose message is short enough to show the model as an observation.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import json
import threading
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from rankact.errors import RankactError
from rankact.tools._docstring import parse_docstring

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


class ToolError(RankactError):
    """Base of every error a tool call can end with (a branch of the error tree in `rankact.errors`)."""


class ToolArgumentError(ToolError):
    """The arguments did not validate; the message lists the fields and what was expected."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors or []


class ToolTimeoutError(ToolError):
    """The tool did not finish within its timeout."""


class ToolExecutionError(ToolError):
    """The tool raised; the message is "ExcType: msg"."""


class ToolCitation(BaseModel):
    chunk_id: str
    source: str | None = None
    title: str | None = None


class ToolResult(BaseModel):
    text: str
    citations: list[ToolCitation] = Field(default_factory=list)


class _NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's auto-generated "title" keys: noise in a prompt, and they change the hash."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                # keys here are field names (a field may be called "title"): keep them all
                out[key] = {k: _strip_titles(v) for k, v in value.items()}
            else:
                out[key] = _strip_titles(value)
        return out
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    name = getattr(origin, "__name__", str(origin))
    return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name


def _to_result(value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, str):
        return ToolResult(text=value)
    if value is None:
        return ToolResult(text="")
    if isinstance(value, BaseModel):
        return ToolResult(text=value.model_dump_json())
    if isinstance(value, dict | list | tuple):
        try:
            return ToolResult(text=json.dumps(value, ensure_ascii=False, default=str))
        except (TypeError, ValueError):
            pass
    return ToolResult(text=str(value))


def _wrap_exception(exc: BaseException) -> ToolError:
    if isinstance(exc, ToolError):
        return exc
    err = ToolExecutionError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _start_in_thread(fn: Callable[[], Any]) -> concurrent.futures.Future:
    """Run `fn` in a fresh daemon thread and return a Future for its result.

    Not a ThreadPoolExecutor: a Python thread cannot be killed, so a tool that hangs past
    its timeout keeps running in the background. A daemon thread at least cannot block
    interpreter exit or `asyncio.run` shutdown, and cannot exhaust a shared pool.
    """
    future: concurrent.futures.Future = concurrent.futures.Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
            future.set_exception(exc)

    threading.Thread(target=target, name="rankact-tool", daemon=True).start()
    return future


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Tool:
    """A tool the agent can call. Subclass and override `run` (sync) or `arun` (async).

    Class (or instance) attributes: `name`, `description`, `args_model` (a pydantic model
    of the arguments) and `timeout` in seconds (None: no limit).
    """

    name: str
    description: str = ""
    args_model: type[BaseModel] = _NoArgs
    timeout: float | None = 30.0

    # ---- implementation hooks -------------------------------------------------------
    def run(self, **kwargs: Any) -> str | ToolResult:
        raise NotImplementedError(f"tool {self.name!r} implements neither run nor arun")

    async def arun(self, **kwargs: Any) -> str | ToolResult:
        return self.run(**kwargs)

    @property
    def is_async(self) -> bool:
        """True when the tool's implementation is `arun` (it overrides it)."""
        return type(self).arun is not Tool.arun

    # ---- schema ----------------------------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        params = _strip_titles(self.args_model.model_json_schema())
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        params.pop("additionalProperties", None)
        return {"name": self.name, "description": self.description, "parameters": params}

    @property
    def schema_hash(self) -> str:
        canonical = json.dumps(self.json_schema(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def _fields(self) -> list[tuple[str, Any]]:
        """(name as the model sees it, field): the alias when a name had to be renamed."""
        return [(f.alias or n, f) for n, f in self.args_model.model_fields.items()]

    def _required(self) -> list[str]:
        return [n for n, f in self._fields() if f.is_required()]

    @property
    def single_string_input(self) -> bool:
        """Exactly one required parameter and it is a `str` (optional ones may follow);
        such a tool also accepts its input as plain text."""
        required = [f for _, f in self._fields() if f.is_required()]
        return len(required) == 1 and required[0].annotation is str

    def _args_hint(self) -> str:
        parts = []
        for fname, field in self._fields():
            piece = f'"{fname}": {_type_name(field.annotation)}'
            if not field.is_required():
                piece += f" = {field.get_default(call_default_factory=True)!r}"
            parts.append(piece)
        return "{" + ", ".join(parts) + "}"

    def render_signature(self) -> str:
        """One line for the prompt: `name(arg: type, opt: type = default) - description`."""
        parts = []
        for fname, field in self._fields():
            piece = f"{fname}: {_type_name(field.annotation)}"
            if not field.is_required():
                piece += f" = {field.get_default(call_default_factory=True)!r}"
            parts.append(piece)
        desc = " ".join(self.description.split())
        line = f"{self.name}({', '.join(parts)})"
        return f"{line} - {desc}" if desc else line

    # ---- validation ------------------------------------------------------------------
    def validate(self, raw: dict[str, Any] | str | BaseModel | None) -> BaseModel:
        """Validate raw model output into the argument model, or raise ToolArgumentError.

        Accepts a dict, a JSON object as a string, None/empty (no arguments) and, for a
        single-string-input tool, plain text (or a JSON string literal) as that argument.
        """
        if isinstance(raw, self.args_model):
            return raw
        data = self._raw_arguments(raw)
        try:
            return self.args_model.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
                problems.append(f"{loc}: {err['msg']}")
            raise ToolArgumentError(
                f"invalid arguments for tool '{self.name}': {'; '.join(problems)}. "
                f"Expected {self._args_hint()}",
                errors=[{k: v for k, v in e.items() if k != "ctx"} for e in exc.errors(include_url=False)],
            ) from None

    def _raw_arguments(self, raw: dict[str, Any] | str | BaseModel | None) -> dict[str, Any]:
        """Raw model output as an argument dict (not yet validated), or ToolArgumentError."""
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        data: Any = raw
        if raw is None:
            data = {}
        elif isinstance(raw, str):
            text = raw.strip()
            parsed: Any = None
            is_json = False
            if text[:1] in ("{", '"', "["):
                try:
                    parsed, is_json = json.loads(text), True
                except ValueError:
                    pass
            if is_json and isinstance(parsed, dict):
                data = parsed
            elif self.single_string_input:
                value = parsed if is_json and isinstance(parsed, str) else text
                data = {self._required()[0]: value}
            elif not text:
                data = {}
            else:
                raise ToolArgumentError(
                    f"invalid arguments for tool '{self.name}': expected a JSON object "
                    f"{self._args_hint()}, got {_short(text)}"
                )
        if not isinstance(data, dict):
            raise ToolArgumentError(
                f"invalid arguments for tool '{self.name}': expected a JSON object {self._args_hint()}, "
                f"got {type(data).__name__}"
            )
        return data

    def _kwargs(self, args: BaseModel) -> dict[str, Any]:
        # attribute access, not model_dump: nested models stay models
        return {(f.alias or n): getattr(args, n) for n, f in type(args).model_fields.items()}

    # ---- execution -------------------------------------------------------------------
    def _limit(self, timeout_cap: float | None) -> float | None:
        """The tool's own timeout, or the caller's cap where that is tighter (None: no limit)."""
        if timeout_cap is None:
            return self.timeout
        return timeout_cap if self.timeout is None else min(self.timeout, timeout_cap)

    def _timeout_error(self, timeout: float) -> ToolTimeoutError:
        return ToolTimeoutError(f"tool '{self.name}' timed out after {timeout:g} s")

    # The one place a tool's time is limited, for sync and async tools alike: the agent passes
    # its `tool_timeout` as `timeout_cap` instead of wrapping the call in a second timer.
    def invoke(self, raw: dict[str, Any] | str | BaseModel | None = None, *,
               timeout_cap: float | None = None) -> ToolResult:
        """Validate and run, blocking; works inside a running event loop too. `timeout_cap`:
        a caller's limit in seconds; the tighter of it and the tool's own `timeout` applies."""
        kwargs = self._kwargs(self.validate(raw))
        timeout = self._limit(timeout_cap)
        if self.is_async:
            call: Callable[[], Any] = lambda: asyncio.run(self.arun(**kwargs))
            if timeout is None and not _in_running_loop():
                return self._finish(call)
        else:
            call = lambda: self.run(**kwargs)
            if timeout is None:
                return self._finish(call)
        # In a worker thread: sync tools so the timeout can be enforced, async tools so
        # they get their own event loop even when the caller is already inside one.
        future = _start_in_thread(call)
        try:
            value = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            # The thread cannot be killed; it finishes (or not) in the background.
            raise self._timeout_error(timeout) from None
        except Exception as exc:
            raise _wrap_exception(exc) from exc
        return _to_result(value)

    def _finish(self, call: Callable[[], Any]) -> ToolResult:
        try:
            return _to_result(call())
        except Exception as exc:
            raise _wrap_exception(exc) from exc

    async def ainvoke(self, raw: dict[str, Any] | str | BaseModel | None = None, *,
                      timeout_cap: float | None = None) -> ToolResult:
        """Validate and run without blocking the event loop (sync tools run in a thread);
        `timeout_cap` as for `invoke`."""
        kwargs = self._kwargs(self.validate(raw))
        timeout = self._limit(timeout_cap)
        if self.is_async:
            awaitable: Any = self.arun(**kwargs)
        else:
            awaitable = asyncio.wrap_future(_start_in_thread(lambda: self.run(**kwargs)))
        try:
            value = await asyncio.wait_for(awaitable, timeout=timeout)
        except TimeoutError:
            raise self._timeout_error(timeout) from None
        except Exception as exc:
            raise _wrap_exception(exc) from exc
        return _to_result(value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')}>"


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---- the decorator ----------------------------------------------------------------------
class FunctionTool(Tool):
    """A tool built by `@tool` from a plain (sync or async) function; still callable as one."""

    def __init__(self, fn: Callable[..., Any], *, name: str, description: str,
                 args_model: type[BaseModel], timeout: float | None):
        self.fn = fn
        self.name = name
        self.description = description
        self.args_model = args_model
        self.timeout = timeout
        self._is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def is_async(self) -> bool:
        return self._is_async

    def run(self, **kwargs: Any) -> Any:
        if self._is_async:
            return asyncio.run(self.fn(**kwargs))
        return self.fn(**kwargs)

    async def arun(self, **kwargs: Any) -> Any:
        if self._is_async:
            return await self.fn(**kwargs)
        return self.fn(**kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _args_model_for(fn: Callable[..., Any], model_name: str, arg_docs: dict[str, str]) -> type[BaseModel]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError, AttributeError):  # unresolvable forward references: fall back to the raw annotations
        hints = dict(getattr(fn, "__annotations__", {}))
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"@tool does not support *args/**kwargs (in {fn.__qualname__})")
        if pname.startswith("_"):
            raise TypeError(f"@tool argument names must not start with '_' ({pname} in {fn.__qualname__})")
        annotation = hints.get(pname, Any)
        default = ... if param.default is param.empty else param.default
        field = Field(default, description=arg_docs.get(pname))
        if hasattr(BaseModel, pname) or pname.startswith("model_"):
            # `json`, `schema`, `copy`, `model_*` would clash with BaseModel: store under
            # another name, keep the argument's own name as the alias (schema, input, kwargs)
            field = Field(default, description=arg_docs.get(pname), alias=pname)
            pname = f"arg_{pname}"
        fields[pname] = (annotation, field)
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None, timeout: float | None = 30.0) -> Any:
    """Turn a function into a `Tool`. Usable bare (`@tool`) or with arguments (`@tool(timeout=5)`).

    The argument model and JSON Schema come from the signature, type hints and defaults;
    the description and per-argument descriptions from the docstring (Google `Args:` or
    reST `:param x:`).
    """

    def build(f: Callable[..., Any]) -> FunctionTool:
        summary, arg_docs = parse_docstring(f.__doc__)
        tool_name = name or f.__name__
        camel = "".join(p.capitalize() for p in tool_name.replace("-", "_").split("_") if p) or "Tool"
        model = _args_model_for(f, f"{camel}Args", arg_docs)
        return FunctionTool(f, name=tool_name, description=description if description is not None else summary,
                            args_model=model, timeout=timeout)

    if fn is not None:
        return build(fn)
    return build
