"""Loop semantics on a scripted backend: success, every failure path, streaming, async, JSON."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from rankact.agent import events as ev
from rankact.agent.llm.scripted import ScriptedLLM
from rankact.agent.loop import Agent
from rankact.agent.observations import LOOP_MESSAGE
from rankact.agent.prompt import PROMPT_VERSION
from rankact.agent.trajectory import Trajectory
from rankact.tools import ToolCitation, ToolResult, tool
from rankact.tools.calculator import calculator


def calc(expr: str, thought: str = "I will compute.") -> str:
    return f'Thought: {thought}\nAction: calculator\nAction Input: {{"expression": "{expr}"}}\n'


def test_tool_then_answer():
    llm = ScriptedLLM([calc("17*23"), "Thought: I know it.\nFinal Answer: 391"])
    traj = Agent(llm, [calculator]).run("What is 17 * 23?")
    assert traj.status == "finished"
    assert traj.final_answer == "391"
    assert traj.steps[0].action == "calculator"
    assert traj.steps[0].action_input == {"expression": "17*23"}
    assert traj.steps[0].observation == "391"
    assert traj.tool_calls == 1 and traj.errors == 0
    assert traj.prompt_version == PROMPT_VERSION
    assert traj.model.backend == "scripted"
    assert traj.tools[0].name == "calculator" and traj.tools[0].schema_hash == calculator.schema_hash
    assert traj.usage.llm_calls == 2
    # The second call saw a CLEAN rendering of step 0 and its observation.
    second = llm.calls[1]
    assert second[-2].role == "assistant"
    assert second[-2].content == 'Thought: I will compute.\nAction: calculator\nAction Input: {"expression": "17*23"}'
    assert second[-1].content == "Observation: 391"
    assert "calculator(expression: str)" in second[0].content


def test_scratchpad_is_clean_rendering_of_sloppy_step():
    sloppy = "i should use a tool\naction:  Calculator  \naction input: {'expression': '2+2'} because why not\nObs"
    llm = ScriptedLLM([sloppy, "Final Answer: 4"])
    traj = Agent(llm, [calculator]).run("2+2?")
    assert traj.final_answer == "4"
    assert llm.calls[1][-2].content == (
        'Thought: i should use a tool\nAction: calculator\nAction Input: {"expression": "2+2"}'
    )
    assert traj.steps[0].raw == sloppy


def test_invalid_arguments_become_an_observation():
    llm = ScriptedLLM(['Action: calculator\nAction Input: {"expr": "1+1"}', "Final Answer: 2"])
    traj = Agent(llm, [calculator]).run("1+1?")
    step = traj.steps[0]
    assert step.error is not None and step.error.kind == "validation"
    assert "expression" in step.observation and step.observation.startswith("Error:")
    assert traj.status == "finished" and traj.final_answer == "2"


def test_tool_exception_becomes_an_observation():
    @tool
    def broken(query: str) -> str:
        """Always fails."""
        raise RuntimeError("database is down")

    llm = ScriptedLLM(["Action: broken\nAction Input: anything", "Final Answer: unknown"])
    traj = Agent(llm, [broken]).run("q")
    assert traj.steps[0].error.kind == "tool"
    assert "database is down" in traj.steps[0].observation
    assert traj.status == "finished"


def test_calculator_refusal_is_a_tool_error():
    llm = ScriptedLLM([calc("__import__('os')"), "Final Answer: no"])
    traj = Agent(llm, [calculator]).run("q")
    assert traj.steps[0].error.kind == "tool"


def test_tool_timeout_becomes_an_observation():
    @tool(timeout=None)
    def slow(query: str) -> str:
        """Sleeps."""
        time.sleep(2)
        return "late"

    llm = ScriptedLLM(["Action: slow\nAction Input: x", "Final Answer: gave up"])
    started = time.perf_counter()
    traj = Agent(llm, [slow], tool_timeout=0.2).run("q")
    assert time.perf_counter() - started < 1.5
    assert traj.steps[0].error.kind == "timeout"
    assert "timed out" in traj.steps[0].observation
    assert traj.final_answer == "gave up"


def test_agent_tool_timeout_caps_sync_and_async_tools_in_async_runs():
    @tool(timeout=None)
    def slow_sync(query: str) -> str:
        """Sleeps."""
        time.sleep(2)
        return "late"

    @tool(timeout=None)
    async def slow_async(query: str) -> str:
        """Sleeps."""
        await asyncio.sleep(2)
        return "late"

    for slow in (slow_sync, slow_async):
        llm = ScriptedLLM([f"Action: {slow.name}\nAction Input: x", "Final Answer: gave up"])
        started = time.perf_counter()
        traj = asyncio.run(Agent(llm, [slow], tool_timeout=0.2).arun("q"))
        assert time.perf_counter() - started < 1.5
        assert traj.steps[0].error.kind == "timeout"
        assert traj.steps[0].observation == f"Error: tool '{slow.name}' timed out after 0.2 s. " \
                                            "Try a different input or tool, or answer."


def test_every_llm_call_gets_its_own_seed_from_the_run_seed():
    seen = []

    class Recording(ScriptedLLM):
        def generate(self, messages, config):
            seen.append(config.seed)
            return super().generate(messages, config)

    Agent(Recording([calc("1+2"), calc("3+4"), "Final Answer: 7"]), [calculator]).run("q", seed=7)
    assert seen == [7000, 7001, 7002]
    seen.clear()
    Agent(Recording([calc("1+2"), "Final Answer: 3"]), [calculator]).run("q")
    assert seen == [None, None]


def test_tools_own_timeout_is_honoured():
    @tool(timeout=0.2)
    def slow2(query: str) -> str:
        """Sleeps."""
        time.sleep(2)
        return "late"

    traj = Agent(ScriptedLLM(["Action: slow2\nAction Input: x", "Final Answer: -"]), [slow2]).run("q")
    assert traj.steps[0].error.kind == "timeout"


def test_parse_error_feeds_a_hint_and_is_never_the_answer():
    llm = ScriptedLLM(["I think the answer is 7", "Final Answer: 7"])
    traj = Agent(llm, [calculator]).run("q")
    assert traj.steps[0].error.kind == "parse"
    assert "Final Answer" in llm.calls[1][-1].content  # the format hint reached the model
    assert traj.status == "finished" and traj.final_answer == "7" and traj.parse_errors == 1


def test_parse_error_budget_exhausted_is_an_error_without_answer():
    llm = ScriptedLLM(["nonsense one", "nonsense two", "Final Answer: late"])
    traj = Agent(llm, [calculator], max_parse_errors=2).run("q")
    assert traj.status == "error"
    assert traj.final_answer is None
    assert traj.parse_errors == 2 and len(traj.steps) == 2
    assert llm.remaining == 1


def test_unknown_tool_is_a_parse_error_listing_tools():
    llm = ScriptedLLM(['Action: google\nAction Input: {"q": "x"}', "Final Answer: x"])
    traj = Agent(llm, [calculator]).run("q")
    assert traj.steps[0].error.kind == "parse"
    assert "calculator" in traj.steps[0].observation


def test_repeated_action_ends_with_loop_and_a_forced_answer():
    llm = ScriptedLLM([calc("1+1"), calc("1+1", thought="again"), 'Action: calculator\nAction Input: 1+1', "Final Answer: 2"])
    traj = Agent(llm, [calculator], loop_limit=3, max_steps=6).run("q")
    assert traj.status == "loop"
    assert len(traj.steps) == 4
    # The second identical call was told it repeats itself; the third was not run.
    assert "already ran" in traj.steps[1].observation
    assert traj.steps[2].observation == LOOP_MESSAGE
    assert traj.steps[3].forced_answer and traj.final_answer == "2"


def test_loop_without_forced_answer():
    llm = ScriptedLLM([calc("1+1")] * 5)
    traj = Agent(llm, [calculator], loop_limit=2, forced_final_answer=False).run("q")
    assert traj.status == "loop" and len(traj.steps) == 2 and traj.final_answer is None
    assert llm.remaining == 3


def test_different_inputs_are_not_a_loop():
    llm = ScriptedLLM([calc("1+1"), calc("1+2"), calc("1+1"), "Final Answer: 2"])
    assert Agent(llm, [calculator], loop_limit=2).run("q").status == "finished"


def test_max_steps_with_forced_answer():
    llm = ScriptedLLM([calc("1+1"), calc("2+2"), "Final Answer: 4"])
    traj = Agent(llm, [calculator], max_steps=2).run("q")
    assert traj.status == "max_steps"
    assert traj.final_answer == "4"
    assert [s.forced_answer for s in traj.steps] == [False, False, True]
    assert "no steps left" in llm.calls[-1][-1].content


def test_max_steps_without_forced_answer():
    llm = ScriptedLLM([calc("1+1"), calc("2+2"), "Final Answer: 4"])
    traj = Agent(llm, [calculator], max_steps=2, forced_final_answer=False).run("q")
    assert traj.status == "max_steps" and traj.final_answer is None and len(traj.steps) == 2


def test_action_and_answer_together_spends_budget():
    llm = ScriptedLLM([calc("1") + "Final Answer: 1", "Final Answer: 1"])
    traj = Agent(llm, [calculator]).run("q")
    assert traj.steps[0].error.kind == "parse" and traj.final_answer == "1"


def test_backend_failure_ends_with_error_status():
    events = list(Agent(ScriptedLLM([calc("1+1")]), [calculator]).stream("q"))
    assert [e.type for e in events][-2:] == ["error", "done"] and events[-2].kind == "backend"
    traj = events[-1].trajectory
    assert traj.status == "error" and "exhausted" in traj.metadata["error"] and traj.final_answer is None


def test_stream_yields_events_in_order():
    llm = ScriptedLLM([calc("6*7"), "Thought: done\nFinal Answer: 42"])
    events = list(Agent(llm, [calculator]).stream("q"))
    kinds = [e.type for e in events]
    assert kinds == [
        "step_start", "thought", "action", "observation",
        "step_start", "thought", "final_answer", "done",
    ]
    assert events[3].text == "42"
    assert isinstance(events[-1], ev.Done) and events[-1].trajectory.final_answer == "42"


def test_stream_error_event_precedes_its_observation():
    events = list(Agent(ScriptedLLM(["blah", "Final Answer: x"]), [calculator]).stream("q"))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["step_start", "error", "observation"]
    assert events[2].is_error


def test_async_run_and_async_tool():
    calls = []

    @tool
    async def lookup(query: str) -> ToolResult:
        """Async lookup."""
        await asyncio.sleep(0.01)
        calls.append(query)
        return ToolResult(
            text="[1] Paris is the capital.\n[2] Lyon is a city.",
            citations=[ToolCitation(chunk_id="c1", source="wiki/paris"), ToolCitation(chunk_id="c2")],
        )

    llm = ScriptedLLM(["Action: lookup\nAction Input: capital of France", "Final Answer: Paris [1]"])
    traj = asyncio.run(Agent(llm, [lookup]).arun("Capital of France?", temperature=0.7, seed=3))
    assert calls == ["capital of France"]
    assert traj.final_answer == "Paris [1]"
    # Only the passage the answer cites.
    assert [c.chunk_id for c in traj.citations] == ["c1"]
    assert traj.sampling["temperature"] == 0.7 and traj.sampling["seed"] == 3


def test_citations_fall_back_to_all_when_none_cited():
    @tool
    def search(query: str) -> ToolResult:
        """Search."""
        return ToolResult(text="[1] a\n[2] b", citations=[ToolCitation(chunk_id="a"), ToolCitation(chunk_id="b")])

    traj = Agent(ScriptedLLM(["Action: search\nAction Input: x", "Final Answer: a"]), [search]).run("q")
    assert [c.chunk_id for c in traj.citations] == ["a", "b"]


def test_astream_yields_the_same_events_as_stream():
    script = [calc("2*3"), "Final Answer: 6"]

    async def collect():
        return [e.type async for e in Agent(ScriptedLLM(script), [calculator]).astream("q")]

    sync_kinds = [e.type for e in Agent(ScriptedLLM(script), [calculator]).stream("q")]
    assert asyncio.run(collect()) == sync_kinds


def test_trajectory_json_round_trip():
    llm = ScriptedLLM([calc("2**10"), "Final Answer: 1024"])
    traj = Agent(llm, [calculator]).run("q", seed=1)
    again = Trajectory.from_json(traj.to_json())
    assert again == traj
    data = json.loads(traj.to_json())
    assert [s["role"] for s in data["segments"]] == ["prompt", "generated", "observation", "generated"]
    assert traj.transcript().count("Observation: 1024") == 1


def test_per_call_seeds_are_derived_from_the_run_seed():
    seen = []

    class Spy(ScriptedLLM):
        def generate(self, messages, config):
            seen.append(config.seed)
            return super().generate(messages, config)

    Agent(Spy([calc("1"), "Final Answer: 1"]), [calculator]).run("q", seed=7, temperature=0.5)
    assert seen == [7000, 7001]


def test_constructor_rejects_bad_settings():
    llm = ScriptedLLM([])
    with pytest.raises(ValueError):
        Agent(llm, [calculator], guided=True)  # no token-level access
    with pytest.raises(ValueError):
        Agent(llm, [calculator, calculator])
    with pytest.raises(ValueError):
        Agent(llm, [calculator], max_steps=0)
    assert Agent(llm).tools  # default tools
