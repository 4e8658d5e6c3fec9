"""Native tool calling against a real socket: tools sent, tool_calls read (single, parallel,
malformed, streamed), results returned as tool messages, trajectories in the usual fields."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from served_stub import Reply, ServedStub, call

from rankact.agent.build import AgentSetupError, agent_format, build_agent
from rankact.agent.llm.openai_http import OpenAICompatibleLLM
from rankact.agent.llm.scripted import ScriptedLLM
from rankact.agent.loop import Agent
from rankact.tools import calculator, tool

SUM = Reply(tool_calls=[call("calculator", {"expression": "17 * 23"}, "call_a")], text="Let me compute.")
ANSWER = Reply(text="391")


def _agent(url: str, *tools, streaming: bool = False, **options) -> Agent:
    llm = OpenAICompatibleLLM(url, max_retries=0, streaming=streaming)
    return Agent(llm, list(tools) or [calculator], format="native", **options)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_single_call_runs_and_its_result_goes_back_as_a_tool_message(streaming):
    stub = ServedStub([SUM, ANSWER])
    with stub as url:
        trajectory = _agent(url, streaming=streaming).run("What is 17 * 23?")
    assert trajectory.status == "finished" and trajectory.final_answer == "391"
    first, second = stub.bodies("/v1/chat/completions")
    assert first["tools"] == [{"type": "function", "function": calculator.json_schema()}]
    assert bool(first.get("stream")) is streaming
    assistant, result = second["messages"][-2:]
    assert assistant["tool_calls"] == [{"id": "call_a", "type": "function", "function": {
        "name": "calculator", "arguments": json.dumps({"expression": "17 * 23"})}}]
    assert result == {"role": "tool", "content": "391", "tool_call_id": "call_a"}
    step = trajectory.steps[0]
    assert (step.thought, step.action, step.action_input, step.observation, step.call_id) == (
        "Let me compute.", "calculator", {"expression": "17 * 23"}, "391", "call_a")
    assert trajectory.steps[1].final_answer == "391"
    assert trajectory.exact_token_ids is False and trajectory.sampling["format"] == "native"
    assert [s.role for s in trajectory.segments] == ["prompt", "generated", "observation", "generated"]


def test_parallel_calls_of_one_turn_run_concurrently_and_answer_in_order():
    @tool
    def slow(name: str) -> str:
        """Wait, then echo the name."""
        time.sleep(0.4)
        return f"done {name}"

    turn = Reply(tool_calls=[call("slow", {"name": "a"}, "c1"), call("slow", {"name": "b"}, "c2"),
                             call("slow", {"name": "c"}, "c3")])
    stub = ServedStub([turn, Reply(text="all done")])
    with stub as url:
        started = time.perf_counter()
        trajectory = _agent(url, slow).run("go")
        seconds = time.perf_counter() - started
    assert seconds < 1.0  # three 0.4 s calls, run together
    tool_messages = stub.bodies("/v1/chat/completions")[1]["messages"][-3:]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [
        ("c1", "done a"), ("c2", "done b"), ("c3", "done c")]
    assert [s.call_id for s in trajectory.steps[:3]] == ["c1", "c2", "c3"]
    assert trajectory.tool_calls == 3 and trajectory.final_answer == "all done"


def test_parallel_calls_run_on_the_async_driver_too():
    stub = ServedStub([Reply(tool_calls=[call("calculator", {"expression": "1+1"}, "x"),
                                         call("calculator", {"expression": "2+2"}, "y")]), Reply(text="2 and 4")])
    with stub as url:
        trajectory = asyncio.run(_agent(url).arun("two sums"))
    assert [s.observation for s in trajectory.steps[:2]] == ["2", "4"]


@pytest.mark.parametrize("arguments, message", [
    ('{"expression": "2+', "not valid JSON"),
    ('["2+2"]', "must be a JSON object"),
    ('{"expr": "2+2"}', "expression: Field required"),
])
def test_malformed_arguments_are_not_run_and_the_error_goes_back(arguments, message):
    runs = []

    @tool
    def calc(expression: str) -> str:
        """Evaluate."""
        runs.append(expression)
        return "4"

    stub = ServedStub([Reply(tool_calls=[call("calc", arguments, "bad")]),
                       Reply(tool_calls=[call("calc", {"expression": "2+2"}, "good")]), Reply(text="4")])
    with stub as url:
        trajectory = _agent(url, calc).run("2+2?")
    bad = trajectory.steps[0]
    assert bad.error.kind == "validation" and message in bad.error.message
    assert bad.action_input == arguments  # what the model wrote, kept for the ranking page
    assert runs == ["2+2"]  # the malformed call never ran
    reply = stub.bodies("/v1/chat/completions")[1]["messages"][-1]
    assert reply["role"] == "tool" and reply["tool_call_id"] == "bad" and message in reply["content"]
    assert trajectory.status == "finished" and trajectory.errors == 1


def test_an_unknown_tool_is_an_error_message_naming_the_tools():
    stub = ServedStub([Reply(tool_calls=[call("weather", {}, "w")]), Reply(text="sorry")])
    with stub as url:
        trajectory = _agent(url).run("weather?")
    assert trajectory.steps[0].error.kind == "unknown_tool"
    assert "available: calculator" in trajectory.steps[0].observation


def test_the_same_call_repeated_ends_in_a_loop_and_a_forced_answer_without_tools():
    same = Reply(tool_calls=[call("calculator", {"expression": "1+1"}, "r")])
    stub = ServedStub([same, same, same, Reply(text="Final Answer: 2")])
    with stub as url:
        trajectory = _agent(url, loop_limit=3).run("1+1")
    assert trajectory.status == "loop" and trajectory.final_answer == "2"
    last = stub.bodies("/v1/chat/completions")[-1]
    assert "tools" not in last and "no steps left" in last["messages"][-1]["content"]


def test_a_server_that_rejects_tools_says_how_to_run_react():
    stub = ServedStub([], reject_tools=True)
    with stub as url:
        trajectory = _agent(url).run("hi")
    assert trajectory.status == "error"
    assert "--jinja" in trajectory.metadata["error"] and "--format react" in trajectory.metadata["error"]


def test_native_is_the_default_for_servers_and_react_for_the_rest():
    with ServedStub([]) as url:
        served = OpenAICompatibleLLM(url)
        assert agent_format(served) == "native" and build_agent(served).format == "native"
        assert build_agent(served, format="react").format == "react"
    scripted = ScriptedLLM(["Final Answer: x"])
    assert agent_format(scripted) == "react"
    with pytest.raises(AgentSetupError, match="--format native needs an OpenAI-compatible chat server"):
        build_agent(scripted, format="native")
    with pytest.raises(AgentSetupError, match="unknown format"):
        agent_format(scripted, "json")


def test_old_trajectories_without_the_new_fields_still_load():
    from rankact.agent.trajectory import Trajectory

    old = {"question": "q", "model": {"backend": "transformers", "name": "m"}, "prompt_version": "react-v1",
           "sampling": {"guided": True}, "steps": [{"index": 0, "raw": "x"}],
           "segments": [{"role": "prompt", "text": "p", "token_ids": [1]},
                        {"role": "generated", "text": "g", "token_ids": [2]}]}
    trajectory = Trajectory.model_validate(old)
    assert trajectory.exact_token_ids is None and trajectory.has_exact_ids
    assert trajectory.steps[0].call_id is None and trajectory.segments[0].logprobs is None
