"""`MCPToolset`: one MCP server's connection, and its tools as rankact tools.

The agent loop is synchronous and the `mcp` SDK is async, so each toolset runs its
`mcp.Client` on a private event loop in one thread. One long-lived task owns the client
(anyio requires a context to be left by the task that entered it) and waits for `close()`;
tool calls are submitted to that loop from any thread. `close()` ends the session the SDK's
way (stdio: close stdin, wait, then kill the process group), stops the loop and joins the
thread, so nothing is left behind: no child process, no thread.

A server is given as a command line (`"python my_server.py"`, run over stdio) or an
`http(s)://` URL (streamable HTTP).
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import shlex
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from rankact.tools.base import ToolExecutionError, ToolTimeoutError
from rankact.tools.mcp.tool import MCPTool

# The SDK logs a bad line from a server with a traceback; without a handler of the app's
# own, Python's last-resort handler would print it. The connection error says it in one line.
logging.getLogger("mcp").addHandler(logging.NullHandler())

_CLOSE_TIMEOUT = 10.0  # the SDK's stdio shutdown waits at most ~6 s (stdin close, SIGTERM, SIGKILL)
_CONNECTION_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED, without importing the SDK here
_NO_LIMIT = 24 * 3600.0  # a tool with timeout=None still needs a number for the SDK


class MCPConnectionError(ToolExecutionError):
    """An MCP server that cannot be started or reached, or that went away mid-session."""


def is_url(server: str) -> bool:
    return server.startswith(("http://", "https://"))


def describe(server: str | Sequence[str]) -> str:
    return server if isinstance(server, str) else shlex.join(server)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the SDK's (nested) task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class MCPToolset:
    """The tools of one MCP server. Use as a context manager (sync or async), or `open()`/`close()`.

        with MCPToolset("python my_server.py") as server:
            agent = build_agent(llm, extra_tools=server.tools)

    `timeout`: seconds per tool call (None: no limit); `connect_timeout`: for start-up and the
    tool listing; `prefix`: put before every tool name (two servers with the same tool names);
    `env`: the server's environment (default: this process's, as for any command you run);
    `cwd`: its working folder.
    """

    def __init__(self, server: str | Sequence[str], *, timeout: float | None = 30.0,
                 connect_timeout: float = 30.0, prefix: str = "", env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.server = server
        self.label = describe(server)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.prefix = prefix
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
        target = self._target()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rankact-mcp", daemon=True)
        self._thread.start()
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._owner = asyncio.run_coroutine_threadsafe(self._session(target, ready), self._loop)
        try:
            # The SDK's read timeout bounds the handshake; this bounds everything else.
            listed = ready.result(timeout=3 * self.connect_timeout + _CLOSE_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self.close()
            raise MCPConnectionError(f"MCP server {self.label!r} did not start within "
                                     f"{self.connect_timeout:g} s") from None
        except BaseException as exc:  # noqa: BLE001 - every start-up failure is one line, from the leaf error
            message = self._failure("cannot reach" if is_url(self.label) else "cannot start", exc)
            self.close()
            raise MCPConnectionError(message) from None
        self.tools = [
            MCPTool(self, remote_name=t.name, name=self.prefix + t.name,
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
        argv = shlex.split(self.server) if isinstance(self.server, str) else list(self.server)
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
                listed, cursor = [], None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self._client = client
                self._closing = asyncio.Event()
                ready.set_result(listed)
                await self._closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

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
            raise ToolExecutionError(f"MCP error from {self.label!r}: {_one_line(exc)}") from None
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
        if isinstance(leaf, FileNotFoundError) and not is_url(self.label):
            return f"cannot start MCP server {self.label!r}: command not found: {shlex.split(self.label)[0]}"
        detail = _one_line(leaf) or type(leaf).__name__
        if getattr(leaf, "code", None) == _CONNECTION_CLOSED:  # the SDK's "Connection closed"
            detail = "the server exited or closed the connection"
        if what == "lost":
            message = f"lost the connection to MCP server {self.label!r}: {detail}"
        else:
            message = f"{what} MCP server {self.label!r}: {detail}"
        said = self._stderr_tail(since)
        return f"{message} (server stderr: {said})" if said else message

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
    """Open every server (options as `MCPToolset`'s); if one fails, the ones opened are closed."""
    opened: list[MCPToolset] = []
    try:
        for server in servers:
            opened.append(MCPToolset(server, **options).open())
    except BaseException:
        for toolset in opened:
            toolset.close()
        raise
    return opened
