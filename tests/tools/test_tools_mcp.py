"""MCP tools against a real MCP server (tests/tools/mcp_server.py, the SDK's `MCPServer`) run
as a subprocess, over stdio and over streamable HTTP on loopback."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from rankact.tools.base import ToolArgumentError, ToolExecutionError, ToolTimeoutError
from rankact.tools.mcp import MCPConnectionError, MCPToolset, mcp_tools

SERVER = [sys.executable, str(Path(__file__).with_name("mcp_server.py"))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): it must have been reaped too
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _mcp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rankact-mcp"]


@pytest.fixture(scope="module")
def server():
    with MCPToolset(SERVER, timeout=5.0) as toolset:
        yield toolset


@pytest.fixture(scope="module")
def by_name(server):
    return {t.name: t for t in server.tools}


def test_lists_the_server_tools_with_their_schemas(by_name):
    assert set(by_name) == {"add", "shout", "pick", "norm", "fail", "slow", "calls", "pid"}
    add = by_name["add"].json_schema()
    assert add["description"] == "Add two integers."
    assert add["parameters"]["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert add["parameters"]["required"] == ["a", "b"]
    assert by_name["add"].render_signature() == "add(a: integer, b: integer) - Add two integers."
    assert by_name["shout"].render_signature().startswith('shout(text: string, mode: "upper" | "lower" = \'upper\')')
    assert by_name["shout"].single_string_input and not by_name["add"].single_string_input
    assert by_name["add"].schema_hash != by_name["shout"].schema_hash


def test_valid_calls_return_the_server_result(by_name):
    assert by_name["add"].invoke({"a": 2, "b": 40}).text == "42"
    assert by_name["add"].invoke('{"a": 1, "b": 2}').text == "3"
    assert by_name["shout"].invoke("plain text works").text == "PLAIN TEXT WORKS"  # single string input
    assert by_name["norm"].invoke({"p": {"x": 3, "y": 4}}).text == "5.0"  # nested object ($ref)


def test_invalid_arguments_are_refused_before_the_server_is_called(by_name):
    before = int(by_name["calls"].invoke().text)
    cases = [({"a": "x", "b": 1}, "a: 'x' is not of type 'integer'"),
             ({"a": 1}, "'b' is a required property"),
             ({"color": "pink"}, "'pink' is not one of ['red', 'green', 'blue']"),
             ({"p": {"x": 1}}, "p: 'y' is a required property"),
             ("not json", "expected a JSON object")]
    tools = ["add", "add", "pick", "norm", "add"]
    for tool_name, (raw, message) in zip(tools, cases, strict=True):
        with pytest.raises(ToolArgumentError) as info:
            by_name[tool_name].invoke(raw)
        assert message in str(info.value) and f"tool '{tool_name}'" in str(info.value)
    assert int(by_name["calls"].invoke().text) == before  # nothing reached the server


def test_a_tool_that_raises_is_an_execution_error_with_the_server_message(by_name):
    with pytest.raises(ToolExecutionError, match="cannot do it: because"):
        by_name["fail"].invoke({"reason": "because"})
    assert by_name["add"].invoke({"a": 1, "b": 1}).text == "2"  # the session is still fine


def test_a_slow_tool_times_out_and_the_session_survives(by_name):
    slow = by_name["slow"]
    slow.timeout = 0.5
    try:
        start = time.perf_counter()
        with pytest.raises(ToolTimeoutError, match="tool 'slow' timed out after 0.5 s"):
            slow.invoke({"seconds": 5})
        assert time.perf_counter() - start < 3
        slow.timeout = 5.0
        assert slow.invoke({"seconds": 0.01}).text == "awake"
    finally:
        slow.timeout = 5.0


def test_async_invoke(by_name):
    async def both():
        return await asyncio.gather(by_name["add"].ainvoke({"a": 1, "b": 2}),
                                    by_name["shout"].ainvoke({"text": "Ab", "mode": "lower"}))

    assert [r.text for r in asyncio.run(both())] == ["3", "ab"]


def test_close_leaves_no_process_and_no_thread():
    before = len(_mcp_threads())
    toolset = MCPToolset(SERVER).open()
    pid = int({t.name: t for t in toolset.tools}["pid"].invoke().text)
    assert _alive(pid) and len(_mcp_threads()) == before + 1
    toolset.close()
    assert not _alive(pid)
    assert len(_mcp_threads()) == before
    toolset.close()  # twice is fine
    with pytest.raises(MCPConnectionError, match="not open"):
        toolset.tools[0].invoke({"a": 1, "b": 2})


def test_async_context_manager_closes_cleanly():
    async def use():
        async with MCPToolset(SERVER) as toolset:
            tools = {t.name: t for t in toolset.tools}
            pid = int((await tools["pid"].ainvoke()).text)
            return pid, (await tools["add"].ainvoke({"a": 5, "b": 6})).text

    before = len(_mcp_threads())
    pid, text = asyncio.run(use())
    assert text == "11" and not _alive(pid) and len(_mcp_threads()) == before


def test_a_server_killed_mid_session_becomes_an_error_observation():
    with MCPToolset(SERVER) as toolset:
        tools = {t.name: t for t in toolset.tools}
        pid = int(tools["pid"].invoke().text)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(MCPConnectionError, match="lost the connection to MCP server"):
            tools["add"].invoke({"a": 1, "b": 2})
        with pytest.raises(MCPConnectionError):  # and stays an error, quickly, not a hang
            tools["add"].invoke({"a": 1, "b": 2})
    assert not _alive(pid)


@pytest.mark.parametrize("spec, message", [
    ("no-such-command-xyz --flag", "command not found: no-such-command-xyz"),
    (f"{sys.executable} -c 'import sys; sys.stderr.write(\"bad config\\n\"); sys.exit(3)'",
     "server stderr: bad config"),
    ("http://127.0.0.1:9/mcp", "cannot reach MCP server 'http://127.0.0.1:9/mcp'"),
])
def test_a_server_that_cannot_start_is_one_clear_error(spec, message):
    before = len(_mcp_threads())
    with pytest.raises(MCPConnectionError) as info:
        MCPToolset(spec, connect_timeout=10).open()
    assert message in str(info.value) and "\n" not in str(info.value)
    assert len(_mcp_threads()) == before


def test_mcp_tools_closes_the_servers_opened_before_one_fails():
    before = len(_mcp_threads())
    with pytest.raises(MCPConnectionError, match="command not found"), mcp_tools([SERVER, "no-such-command-xyz"]):
        pass
    assert len(_mcp_threads()) == before


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def http_url():
    port = _free_port()
    proc = subprocess.Popen([*SERVER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the HTTP MCP server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_streamable_http_on_loopback(http_url):
    before = len(_mcp_threads())
    with MCPToolset(http_url, timeout=0.5) as toolset:
        tools = {t.name: t for t in toolset.tools}
        assert "add" in tools and tools["add"].json_schema()["parameters"]["required"] == ["a", "b"]
        assert tools["add"].invoke({"a": 20, "b": 22}).text == "42"
        with pytest.raises(ToolArgumentError):
            tools["add"].invoke({"a": "x"})
        with pytest.raises(ToolExecutionError, match="cannot do it: over http"):
            tools["fail"].invoke({"reason": "over http"})
        with pytest.raises(ToolTimeoutError):
            tools["slow"].invoke({"seconds": 5})
    assert len(_mcp_threads()) == before


def test_no_mcp_import_without_a_server():
    """`--mcp` off costs nothing: building tools and agents never imports the SDK."""
    code = ("import sys; from tools.mcp import mcp_tools; import agent.build, rankact.cli.ask\n"
            "with mcp_tools([]) as tools: assert tools == []\n"
            "assert 'mcp' not in sys.modules and 'jsonschema' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
