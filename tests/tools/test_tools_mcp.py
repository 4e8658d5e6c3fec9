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
    code = ("import sys; from rankact.tools.mcp import mcp_tools; import rankact.agent.build, rankact.cli.ask\n"
            "with mcp_tools([]) as tools: assert tools == []\n"
            "assert 'mcp' not in sys.modules and 'jsonschema' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# ---- red team round 3 (N7, N8, N13, N14, N15): a hostile server, tests/tools/hostile_mcp_server.py ----
HOSTILE = [sys.executable, str(Path(__file__).with_name("hostile_mcp_server.py"))]
HOSTILE_LABEL = f"{Path(sys.executable).name} hostile_mcp_server.py"


def _hostile(*mode: str, **options) -> MCPToolset:
    return MCPToolset([*HOSTILE, *mode], timeout=10.0, **options)


@pytest.mark.parametrize("mode", ["flood_error", "rpc_error"])
def test_a_server_error_of_megabytes_is_cut_to_the_observation_bound(mode):
    from rankact.tools.limits import MAX_OBSERVATION_CHARS

    with _hostile(mode, "2") as server:  # 2 MB of error text (isError result, or JSON-RPC error)
        [echo] = server.tools
        with pytest.raises(ToolExecutionError) as info:
            echo.invoke({"text": "hi"})
    assert 100 < len(str(info.value)) <= MAX_OBSERVATION_CHARS + 100  # before: 2,097,152 characters


@pytest.mark.timeout(120)  # before: stdlib re backtracks 2^40 times in the agent's thread (hours)
def test_a_backtracking_pattern_in_the_server_schema_is_refused_in_bounded_time():
    with _hostile("redos") as server:
        bad = {t.name: t for t in server.tools}["bad"]
        start = time.monotonic()
        with pytest.raises(ToolArgumentError, match="took longer than 1 s"):
            bad.validate({"text": "a" * 40 + "!"})
        assert time.monotonic() - start < 60  # 1 s of CPU; wall time stretches on a loaded machine
        assert bad.validate({"text": "aaaa"}).model_extra == {"text": "aaaa"}  # a matching value passes
        with pytest.raises(ToolArgumentError, match="does not match"):  # a quick mismatch is a plain error
            bad.validate({"text": "b"})


@pytest.mark.timeout(60)
def test_pattern_properties_and_additional_properties_run_under_the_deadline():
    from rankact.tools.mcp.validation import ArgumentsTooSlow, argument_errors, bounded_validator

    schema = {"type": "object", "patternProperties": {"^(a|a)+$": {"type": "integer"}},
              "additionalProperties": False}
    validator = bounded_validator(schema)
    assert argument_errors(validator, {"aaa": 1}) == []
    assert [e.validator for e in argument_errors(validator, {"aaa": "x"})] == ["type"]
    for data in ({"a" * 40 + "!": 1}, {"a" * 40 + "!": "x"}):
        with pytest.raises(ArgumentsTooSlow):
            argument_errors(validator, data, 0.2)
    # jsonschema evaluates these patterns itself for unevaluatedProperties: the server checks instead.
    assert bounded_validator({**schema, "unevaluatedProperties": False}) is None


def test_a_huge_schema_is_refused_and_a_large_enum_gives_a_bounded_error_and_signature():
    from rankact.tools.limits import MAX_OBSERVATION_CHARS

    with pytest.raises(MCPConnectionError, match=r"schema of tool 'bad' has 2,\d{3},\d{3} characters \(at most 32,000"):
        _hostile("hugeenum", "200000").open()  # before: a 2 MB schema in every prompt
    with _hostile("hugeenum", "3000") as server:  # 3,000 allowed values: 29 KB of schema
        [bad] = server.tools
        assert len(bad.render_signature()) < 300  # before: every value in the signature line too
        with pytest.raises(ToolArgumentError) as info:
            bad.validate({"text": "nope"})
    assert "is not one of" in str(info.value)
    assert len(str(info.value)) <= MAX_OBSERVATION_CHARS + 100  # before: 4.4 MB with 200,000 values


@pytest.mark.timeout(90)  # before: pages were listed until memory ran out
def test_endless_tool_pagination_and_too_many_tools_are_one_error_each():
    before = len(_mcp_threads())
    with pytest.raises(MCPConnectionError, match=r"lists more than 128 tools .*--mcp 'max_tools=N:SERVER'"):
        _hostile("pages").open()
    with pytest.raises(MCPConnectionError, match="lists its tools over more than 64 pages"):
        _hostile("pages", max_tools=10**6).open()
    with pytest.raises(MCPConnectionError, match="lists more than 128 tools"):
        _hostile("many", "200").open()
    with _hostile("many", "200", max_tools=200) as server:
        assert len(server.tools) == 200
    assert len(_mcp_threads()) == before  # the refused servers were closed too


def test_a_server_is_named_by_its_executable_and_script_never_its_arguments():
    secret = "--api-key=SECRET-TOKEN-123"
    with _hostile("exit_on_call", secret) as server:
        assert server.label == HOSTILE_LABEL
        with pytest.raises(MCPConnectionError) as info:
            server.tools[0].invoke({"text": "hi"})
    assert f"lost the connection to MCP server '{HOSTILE_LABEL}'" in str(info.value)
    assert "SECRET" not in str(info.value)  # before: the whole command line, secret included


def test_labels_and_specs():
    from rankact.tools.mcp.spec import MCPSpecError, label, parse_spec, redact

    assert label("npx -y @org/server --token=abc") == "npx"
    assert label(["/usr/bin/python3", "-u", "/srv/my_server.py", "--key", "k"]) == "python3 my_server.py"
    assert label("https://user:pw@example.com:8443/mcp?token=abc#x") == "https://example.com:8443/mcp"
    assert parse_spec("python s.py --x=1") == ("python s.py --x=1", {})
    assert parse_spec("prefix=gh_:python s.py a:b") == ("python s.py a:b", {"prefix": "gh_"})
    assert parse_spec("prefix=g.,max_tools=500:http://h/mcp") == ("http://h/mcp", {"prefix": "g.", "max_tools": 500})
    # what a transport or a crash report may quote back is scrubbed of the hidden parts
    command = "python /srv/s.py --api-key=SECRET-TOKEN-123"
    assert redact(f"bad key SECRET-TOKEN-123 in {command}", command) == "bad key [redacted] in [redacted]"
    url = "http://u:pw12@h/mcp?token=abcdef"
    assert redact(f"401 for url '{url}', token=abcdef, abcdef", url) == "401 for url '[redacted]', [redacted], [redacted]"
    for bad, message in [("max_tools=many:x", "not a number"), ("prefix=a b:x", "use only letters")]:
        with pytest.raises(MCPSpecError, match=message):
            parse_spec(bad)


def test_a_command_line_that_cannot_be_split_is_a_tool_error_without_the_line():
    from rankact.tools.base import ToolError

    with pytest.raises(ToolError, match="cannot read the MCP server command: No closing quotation") as info:
        MCPToolset("python 'x --api-key=SECRET").open()  # before: shlex's ValueError
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize("kind, problem", [("empty", "it is empty"), ("final", "use only letters"),
                                           ("newline", "use only letters"), ("long", "it has 200 characters")])
def test_unusable_server_tool_names_are_refused_when_the_agent_is_built(kind, problem):
    from rankact.agent.build import AgentSetupError, build_agent
    from rankact.agent.llm.scripted import ScriptedLLM

    refused = pytest.raises(AgentSetupError, match=f"MCP server '{HOSTILE_LABEL}'.*cannot be used: {problem}")
    with _hostile("weirdname", kind) as server, refused:
        build_agent(ScriptedLLM([]), extra_tools=server.tools)


def test_a_lookalike_server_tool_is_refused_and_a_prefix_makes_it_usable():
    from rankact.agent.build import AgentSetupError, build_agent
    from rankact.agent.llm.scripted import ScriptedLLM

    refused = pytest.raises(AgentSetupError, match="differ only by case.*--mcp 'prefix=srv_:COMMAND'")
    with _hostile("caseclash") as server, refused:  # `Calculator` next to the built-in `calculator`
        build_agent(ScriptedLLM([]), extra_tools=server.tools)
    llm = ScriptedLLM(['Action: calculator\nAction Input: {"expression": "2+2"}',
                       'Action: H_CALCULATOR\nAction Input: {"expression": "3+3"}', "Final Answer: done"])
    with _hostile("caseclash", prefix="h_") as server:
        trajectory = build_agent(llm, extra_tools=server.tools).run("q")
    assert [(s.action, s.observation) for s in trajectory.steps[:2]] == [
        ("calculator", "4"), ("h_Calculator", 'echo: {"expression": "3+3"}')]
