"""The agent loop with an MCP server's tools: a scripted backend end to end, and guided
decoding's argument slots driven by the server's JSON Schema (tiny random Llama)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from rankact.agent.build import AgentSetupError, build_agent
from rankact.agent.guided import GuidedConfig, _schema_args
from rankact.agent.llm.scripted import ScriptedLLM
from rankact.agent.loop import Agent
from rankact.tools import calculator
from rankact.tools.mcp import MCPToolset

SERVER = [sys.executable, str(Path(__file__).parents[1] / "tools" / "mcp_server.py")]


@pytest.fixture(scope="module")
def server():
    with MCPToolset(SERVER, timeout=5.0) as toolset:
        yield toolset


def test_agent_calls_mcp_tools_and_sees_errors_as_observations(server):
    llm = ScriptedLLM([
        'Thought: add them\nAction: add\nAction Input: {"a": 2, "b": 40}',
        'Thought: again, badly\nAction: add\nAction Input: {"a": "two"}',
        'Thought: try the other one\nAction: fail\nAction Input: {"reason": "no luck"}',
        "Thought: done\nFinal Answer: 42",
    ])
    agent = build_agent(llm, tools=["calculator"], extra_tools=server.tools)
    traj = agent.run("What is 2 + 40?")
    assert traj.status == "finished" and traj.final_answer == "42"
    ok, invalid, failed = traj.steps[:3]
    assert ok.action == "add" and ok.action_input == {"a": 2, "b": 40} and ok.observation == "42" and ok.error is None
    assert invalid.error.kind == "validation" and "'b' is a required property" in invalid.observation
    assert failed.error.kind == "tool" and "cannot do it: no luck" in failed.observation
    # The prompt lists the server's tools with their schemas; the trajectory names them and their hashes.
    system = llm.calls[0][0].content
    assert "add(a: integer, b: integer) - Add two integers." in system and '"required": ["a", "b"]' in system
    refs = {t.name: t.schema_hash for t in traj.tools}
    assert refs["add"] == {t.name: t for t in server.tools}["add"].schema_hash and "calculator" in refs


def test_tool_names_must_be_unique():
    with pytest.raises(AgentSetupError, match="two tools have the same name: 'calculator'"):
        build_agent(ScriptedLLM([]), tools=["calculator"], extra_tools=[calculator])


def test_schema_slots_and_graceful_degradation(server):
    tools = {t.name: t for t in server.tools}
    assert [(a.name, a.type) for a in _schema_args(tools["add"])] == [("a", "integer"), ("b", "integer")]
    (color,) = _schema_args(tools["pick"])
    assert color.type == "enum" and color.choices == ("red", "green", "blue")
    # A nested object ($ref) cannot be a slot: the whole input is generated as free JSON, then validated.
    assert _schema_args(tools["norm"]) is None

    class Nullable:
        def json_schema(self):
            return {"parameters": {"properties": {"q": {"type": ["string", "null"]}}, "required": ["q"]}}

    assert _schema_args(Nullable()) is None


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from rankact.agent.llm.local import TransformersLLM

    return TransformersLLM(tiny_model_dir)


def _prefer(llm, monkeypatch, prefer):
    real = llm.score_continuations

    def score(ids, options):
        real(ids, options)
        return [prefer.get(llm.decode(o), 0.0) for o in options]

    monkeypatch.setattr(llm, "score_continuations", score)


def test_guided_decoding_picks_an_enum_value_the_server_accepts(server, tiny, monkeypatch):
    _prefer(tiny, monkeypatch, {"\nAction:": 5.0, " pick": 3.0, ' "blue"': 2.0})
    config = GuidedConfig(thought_max_tokens=4, input_max_tokens=4, answer_max_tokens=4)
    traj = Agent(tiny, server.tools, max_steps=1, guided_config=config).run("Which color?")
    step = traj.steps[0]
    assert step.action == "pick" and '\nAction Input: {"color": "blue"}' in step.raw
    assert step.error is None and step.observation == "picked blue"


def test_guided_decoding_of_a_nested_schema_is_free_json_then_validated(server, tiny, monkeypatch):
    _prefer(tiny, monkeypatch, {"\nAction:": 5.0, " norm": 3.0})
    config = GuidedConfig(thought_max_tokens=4, input_max_tokens=6, answer_max_tokens=4)
    traj = Agent(tiny, server.tools, max_steps=1, guided_config=config).run("How long is (3, 4)?")
    step = traj.steps[0]
    assert step.action == "norm"
    # The random model writes no valid point: a validation observation, never a crash.
    assert step.error is not None and step.error.kind == "validation" and "tool 'norm'" in step.observation
