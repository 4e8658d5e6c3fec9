"""`MCPToolset`: one MCP server's connection, and its tools as rankact tools.

The agent loop is synchronous and the `mcp` SDK is async, so each toolset runs its
`mcp.Client` on a private event loop in one thread. One long-lived task owns the client
(anyio requires a context to be left by the task that entered it) and waits for `close()`;
tool calls are submitted to that loop from any thread. `close()` ends the session the SDK's
way (stdio: close stdin, wait, then kill the process group), stops the loop and joins the
thread, so nothing is left behind: no child process, no thread.

A server is given as a command line (`"python my_server.py"`, run over stdio) or an
`http(s)://` URL (streamable HTTP). Messages name it by `spec.label` (no arguments: they may
hold secrets). Everything the server sends is bounded: its tool list (`max_tools`, pages, the
listing's time) and the error text a call may end with (`limits.MAX_OBSERVATION_CHARS`).
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from rankact.tools.base import ToolExecutionError, ToolTimeoutError
from rankact.tools.limits import MAX_OBSERVATION_CHARS, bounded
from rankact.tools.mcp.spec import is_url, label, parse_spec, redact, split_command
from rankact.tools.mcp.tool import MCPTool

# The SDK logs a bad line from a server with a traceback; without a handler of the app's
# own, Python's last-resort handler would print it. The connection error says it in one line.
logging.getLogger("mcp").addHandler(logging.NullHandler())

_CLOSE_TIMEOUT = 10.0  # the SDK's stdio shutdown waits at most ~6 s (stdin close, SIGTERM, SIGKILL)
_CONNECTION_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED, without importing the SDK here
_NO_LIMIT = 24 * 3600.0  # a tool with timeout=None still needs a number for the SDK
# Every tool goes into every prompt: a server listing thousands is a mistake or an attack.
DEFAULT_MAX_TOOLS = 128
# A tools/list that keeps answering with a next cursor (and empty or repeated pages) ends here.
MAX_LIST_PAGES = 64
# A tool's argument schema goes into every prompt as JSON (a 200,000-value enum made 2 MB).
MAX_SCHEMA_CHARS = 32_000


class MCPConnectionError(ToolExecutionError):
    """An MCP server that cannot be started or reached, or that went away mid-session."""


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the SDK's (nested) task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _one_line(text: object) -> str:
    """One bounded line: a server's error text can be megabytes."""
    return bounded(" ".join(str(text)[: MAX_OBSERVATION_CHARS + 100].split()))


class MCPToolset:
    """The tools of one MCP server. Use as a context manager (sync or async), or `open()`/`close()`.

        with MCPToolset("python my_server.py") as server:
            agent = build_agent(llm, extra_tools=server.tools)

    `timeout`: seconds per tool call (None: no limit); `connect_timeout`: for start-up and the
    tool listing; `prefix`: put before every tool name (two servers with the same tool names);
    `max_tools`: more tools listed is an error (each one goes into every prompt);
    `env`: the server's environment (default: this process's, as for any command you run);
    `cwd`: its working folder.
    """

    def __init__(self, server: str | Sequence[str], *, timeout: float | None = 30.0,
                 connect_timeout: float = 30.0, prefix: str = "", max_tools: int = DEFAULT_MAX_TOOLS,
                 env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.server = server
        self.label = label(server)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.prefix = prefix
        self.max_tools = max_tools
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.tools: list[MCPTool] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._owner: concurrent.futures.Future | None = None
        self._closing: asyncio.Event | None = None
        self._client: Any = None
        self._stderr: Any = None  # the server's stderr, kept for error messages

    # ---- lifecycle ------------------------------------------------------------------------
    def open(self) -> Self:
        """Start (stdio) or reach (HTTP) the server and list its tools; MCPConnectionError if not."""
        if self._loop is not None:
            raise RuntimeError(f"MCP toolset {self.label!r} is already open")
        try:
            from mcp import Client  # noqa: F401 - fail here, with the install hint
        except ImportError:
            raise MCPConnectionError("MCP tools need the MCP SDK: pip install 'rankact[mcp]'") from None
        target = self._target()  # MCPSpecError for a command line that cannot be split
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rankact-mcp", daemon=True)
        self._thread.start()
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._owner = asyncio.run_coroutine_threadsafe(self._session(target, ready), self._loop)
        try:
            # The SDK's read timeout bounds the handshake, `_list_tools` the listing; this bounds
            # everything else (a process slow to start, a transport that never answers).
            waited = 3 * self.connect_timeout + _CLOSE_TIMEOUT
            listed = ready.result(timeout=waited)
        except concurrent.futures.TimeoutError:
            self.close()
            raise MCPConnectionError(f"MCP server {self.label!r} did not start within {waited:g} s") from None
        except BaseException as exc:  # noqa: BLE001 - every start-up failure is one line, from the leaf error
            leaf = _leaf(exc)
            message = str(leaf) if isinstance(leaf, MCPConnectionError) else self._failure(
                "cannot reach" if is_url(self.label) else "cannot start", exc)
            self.close()
            raise MCPConnectionError(message) from None
        self.tools = [
            MCPTool(self, remote_name=t.name, name=self.prefix + str(t.name),
                    description=t.description or t.title or "", input_schema=t.input_schema, timeout=self.timeout)
            for t in listed
        ]
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """End the session, stop the server (stdio) and the loop thread. Safe to call twice."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        atexit.unregister(self.close)
        owner = self._owner
        if owner is not None and not owner.done():
            if self._closing is not None:
                loop.call_soon_threadsafe(self._closing.set)
            else:  # still connecting
                owner.cancel()
            try:
                owner.result(timeout=_CLOSE_TIMEOUT)
            except BaseException:  # noqa: BLE001, S110 - a server that already died ends its session with an error
                pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=_CLOSE_TIMEOUT)
        if not loop.is_running():
            loop.close()
        self._client = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.open)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    # ---- the session, on the private loop ----------------------------------------------
    def _target(self) -> Any:
        from mcp import StdioServerParameters

        if isinstance(self.server, str) and is_url(self.server):
            return self.server
        argv = split_command(self.server) if isinstance(self.server, str) else list(self.server)
        if not argv:
            raise MCPConnectionError("empty MCP server command")
        # closed by close(); a file, not a pipe, so a chatty server can never block on a full pipe
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        return StdioServerParameters(command=argv[0], args=argv[1:], env=self.env, cwd=self.cwd)

    async def _session(self, target: Any, ready: concurrent.futures.Future) -> None:
        from mcp import Client
        from mcp.client.stdio import stdio_client

        server = target if isinstance(target, str) else stdio_client(target, errlog=self._stderr)
        try:
            async with Client(server, read_timeout_seconds=self.connect_timeout) as client:
                listed = await self._list_tools(client)
                self._client = client
                self._closing = asyncio.Event()
                ready.set_result(listed)
                await self._closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def _list_tools(self, client: Any) -> list[Any]:
        """Every page of tools/list, within `connect_timeout`, MAX_LIST_PAGES pages and `max_tools` tools."""
        listed: list[Any] = []
        cursors: set[str] = set()
        cursor = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                for _ in range(MAX_LIST_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    for tool in page.tools:
                        size = len(json.dumps(tool.input_schema, ensure_ascii=False, default=str))
                        if size > MAX_SCHEMA_CHARS:
                            raise MCPConnectionError(
                                f"MCP server {self.label!r}: the argument schema of tool {str(tool.name)[:64]!r} "
                                f"has {size:,} characters (at most {MAX_SCHEMA_CHARS:,}; it goes into every prompt)")
                    if len(listed) > self.max_tools:
                        raise MCPConnectionError(
                            f"MCP server {self.label!r} lists more than {self.max_tools} tools (each one goes "
                            f"into every prompt); allow more with max_tools (command line: "
                            f"--mcp 'max_tools=N:SERVER')")
                    cursor = page.next_cursor
                    if not cursor:
                        return listed
                    if cursor in cursors:
                        raise MCPConnectionError(f"MCP server {self.label!r} repeats a tools/list cursor")
                    cursors.add(cursor)
        except TimeoutError:
            raise MCPConnectionError(f"MCP server {self.label!r} did not list its tools within "
                                     f"{self.connect_timeout:g} s") from None
        raise MCPConnectionError(f"MCP server {self.label!r} lists its tools over more than {MAX_LIST_PAGES} pages")

    async def _call(self, name: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = self._client
        if client is None:
            raise MCPConnectionError(f"MCP server {self.label!r} is closed")
        since = self._stderr_size()  # a crash report is what the server writes during this call
        try:
            return await client.call_tool(name, arguments, read_timeout_seconds=timeout or _NO_LIMIT)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolTimeoutError(f"tool '{self.prefix}{name}' timed out after {timeout:g} s") from None
            if exc.code == CONNECTION_CLOSED:
                raise MCPConnectionError(self._failure("lost", exc, since)) from None
            raise ToolExecutionError(f"MCP error from {self.label!r}: {self._redact(exc)}") from None
        except (OSError, EOFError) as exc:
            raise MCPConnectionError(self._failure("lost", exc, since)) from None
        except Exception as exc:
            leaf = _leaf(exc)
            if type(leaf).__module__.startswith(("anyio", "httpx", "httpcore")):  # the transport broke
                raise MCPConnectionError(self._failure("lost", leaf, since)) from None
            raise

    def call(self, name: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        """Call tool `name` on the server and wait for its `CallToolResult` (blocking)."""
        loop = self._loop
        if loop is None or self._client is None:
            raise MCPConnectionError(f"MCP server {self.label!r} is not open")
        return asyncio.run_coroutine_threadsafe(self._call(name, arguments, timeout), loop).result()

    # ---- messages -----------------------------------------------------------------------
    def _failure(self, what: str, exc: BaseException, since: int = 0) -> str:
        """One line: what failed, the error, and the last line the server wrote to stderr."""
        leaf = _leaf(exc)
        if isinstance(leaf, FileNotFoundError) and not is_url(self.label):  # the label keeps the executable
            return f"cannot start MCP server {self.label!r}: command not found: {self.label.split()[0]}"
        detail = self._redact(leaf) or type(leaf).__name__
        if getattr(leaf, "code", None) == _CONNECTION_CLOSED:  # the SDK's "Connection closed"
            detail = "the server exited or closed the connection"
        if what == "lost":
            message = f"lost the connection to MCP server {self.label!r}: {detail}"
        else:
            message = f"{what} MCP server {self.label!r}: {detail}"
        said = self._redact(self._stderr_tail(since))
        return f"{message} (server stderr: {said})" if said else message

    def _redact(self, text: object) -> str:
        """One bounded line of `text`, without the server's arguments (a transport error can quote
        the URL, a crash report the command line)."""
        return redact(_one_line(text), self.server)

    def _stderr_size(self) -> int:
        try:
            return os.fstat(self._stderr.fileno()).st_size if self._stderr is not None else 0
        except (OSError, ValueError):
            return 0

    def _stderr_tail(self, since: int = 0) -> str:
        """The last line the server wrote to stderr after byte `since`."""
        if self._stderr is None:
            return ""
        try:
            # pread: the child shares this file's offset, so never move it under its writes
            fd = self._stderr.fileno()
            text = os.pread(fd, max(0, os.fstat(fd).st_size - since), since).decode("utf-8", errors="replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return _one_line(lines[-1])[:300] if lines else ""


def connect_all(servers: Sequence[str | Sequence[str]], **options: Any) -> list[MCPToolset]:
    """Open every server (options as `MCPToolset`'s); if one fails, the ones opened are closed.
    A server given as a string may start with its own options (`prefix=gh_:python server.py`,
    see `spec.parse_spec`), which win over `options`."""
    opened: list[MCPToolset] = []
    try:
        for server in servers:
            own: dict[str, Any] = {}
            if isinstance(server, str):
                server, own = parse_spec(server)
            opened.append(MCPToolset(server, **{**options, **own}).open())
    except BaseException:
        for toolset in opened:
            toolset.close()
        raise
    return opened
