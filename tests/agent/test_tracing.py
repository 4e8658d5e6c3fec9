"""OpenTelemetry traces (agent.tracing): the span tree and GenAI attributes of sequential, async
and lockstep-batched runs, errors on the right spans, and nothing imported when tracing is off."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rankact.agent import tracing
from rankact.agent.batch import Job, run_batch
from rankact.agent.build import build_agent
from rankact.agent.errors import TracingError
from rankact.agent.llm import Completion, ModelInfo
from rankact.agent.llm.scripted import ScriptedLLM

ROOT = Path(__file__).resolve().parents[2]
TID = "rankact.trajectory.id"
LLM_OPS = {"chat", "text_completion"}


@pytest.fixture
def provider():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider)
    yield provider, exporter
    tracing.uninstrument()


def _op(span) -> str:
    return span.attributes.get("gen_ai.operation.name", "")


def _trees(spans) -> dict[str, list]:
    """Spans grouped by the run (invoke_agent) they descend from, keyed by trajectory id;
    checks on the way that every span's parent chain reaches its run's root."""
    by_id = {s.context.span_id: s for s in spans}
    trees: dict[str, list] = defaultdict(list)
    for span in spans:
        root = span
        while _op(root) != "invoke_agent":
            assert root.parent is not None and root.parent.span_id in by_id, f"{span.name} has no run above it"
            root = by_id[root.parent.span_id]
        assert span.context.trace_id == root.context.trace_id
        assert span.attributes[TID] == root.attributes[TID]  # the trajectory id on every span
        trees[root.attributes[TID]].append(span)
    return trees


def _check_tree(spans, trajectory) -> None:
    """The shape of one run's tree against its trajectory."""
    by_id = {s.context.span_id: s for s in spans}
    [run] = [s for s in spans if _op(s) == "invoke_agent"]
    steps = [s for s in spans if s.name == "react_step"]
    calls = [s for s in spans if _op(s) in LLM_OPS]
    tools = [s for s in spans if _op(s) == "execute_tool"]
    assert len(spans) == 1 + len(steps) + len(calls) + len(tools)
    assert all(by_id[s.parent.span_id] is run for s in steps)
    assert all(by_id[s.parent.span_id].name == "react_step" for s in calls + tools)
    assert sorted(s.attributes["rankact.step.index"] for s in steps) == [s.index for s in trajectory.steps]
    assert len(calls) == trajectory.usage.llm_calls
    # Token usage per call adds up to the trajectory's own count.
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in calls) == trajectory.usage.prompt_tokens
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in calls) == trajectory.usage.completion_tokens
    assert run.attributes["rankact.trajectory.status"] == trajectory.status
    assert run.attributes["gen_ai.request.model"] == trajectory.model.name
    for call in calls:
        assert call.name == f"{_op(call)} {trajectory.model.name}"
        assert call.attributes["gen_ai.request.model"] == trajectory.model.name
        assert call.attributes["gen_ai.provider.name"] == trajectory.model.backend
    for step in steps:  # every span lies within its parent's time
        assert run.start_time <= step.start_time <= step.end_time <= run.end_time


def test_a_run_with_a_parse_error_and_tool_calls(provider):
    _, exporter = provider
    agent = build_agent(ScriptedLLM([
        "I am not following the format",
        'Thought: divide\nAction: calculator\nAction Input: {"expression": "1/0"}',
        'Thought: multiply\nAction: calculator\nAction Input: {"expression": "6*7"}',
        "Thought: done\nFinal Answer: 42",
    ]))
    trajectory = agent.run("What is 6*7?")
    assert trajectory.status == "finished"
    spans = exporter.get_finished_spans()
    [tree] = _trees(spans).values()
    _check_tree(tree, trajectory)
    [run] = [s for s in spans if _op(s) == "invoke_agent"]
    assert run.name == "invoke_agent rankact" and run.parent is None
    assert run.attributes[TID] == trajectory.id
    assert run.attributes["gen_ai.agent.name"] == "rankact"
    assert run.status.status_code is StatusCode.UNSET
    steps = sorted((s for s in spans if s.name == "react_step"), key=lambda s: s.attributes["rankact.step.index"])
    assert [s.status.status_code for s in steps] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET,
                                                     StatusCode.UNSET]
    # The parse error: on its step, as an exception event.
    assert steps[0].attributes["error.type"] == "parse"
    [event] = steps[0].events
    assert event.name == "exception" and event.attributes["exception.type"] == "ParseError"
    assert event.attributes["exception.message"] == trajectory.steps[0].error.message
    # The tool calls: two, the first failing with the tool's own exception.
    tools = sorted((s for s in spans if _op(s) == "execute_tool"), key=lambda s: s.start_time)
    assert [s.name for s in tools] == ["execute_tool calculator"] * 2
    assert [t.attributes["gen_ai.tool.call.id"] for t in tools] == [f"{trajectory.id}-1", f"{trajectory.id}-2"]
    assert all(t.attributes["gen_ai.tool.name"] == "calculator" for t in tools)
    assert tools[0].status.status_code is StatusCode.ERROR
    assert tools[0].attributes["error.type"] == "CalculatorError"
    assert tools[0].events[0].attributes["exception.type"].endswith("CalculatorError")
    assert tools[1].status.status_code is StatusCode.UNSET and not tools[1].events
    chats = [s for s in spans if _op(s) == "chat"]
    assert len(chats) == 4 and all(c.attributes["gen_ai.response.finish_reasons"] == ("stop",) for c in chats)
    assert "gen_ai.tool.call.arguments" not in tools[1].attributes  # content is opt-in


def test_tool_content_is_recorded_only_when_asked(provider, monkeypatch):
    _, exporter = provider
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    agent = build_agent(ScriptedLLM(['Action: calculator\nAction Input: {"expression": "6*7"}', "Final Answer: 42"]))
    agent.run("6*7?")
    [tool] = [s for s in exporter.get_finished_spans() if _op(s) == "execute_tool"]
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"expression": "6*7"}
    assert tool.attributes["gen_ai.tool.call.result"] == "42"


def test_a_backend_failure_marks_the_call_the_step_and_the_run(provider):
    _, exporter = provider
    agent = build_agent(ScriptedLLM(['Action: calculator\nAction Input: {"expression": "6*7"}']))
    trajectory = agent.run("6*7?")
    assert trajectory.status == "error"
    spans = exporter.get_finished_spans()
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert sorted(s.name for s in failed) == ["chat scripted", "invoke_agent rankact", "react_step"]
    [chat] = [s for s in failed if _op(s) == "chat"]
    assert chat.attributes["error.type"] == "BackendError" and "exhausted" in chat.status.description
    assert chat.events[0].name == "exception"
    [run] = [s for s in failed if _op(s) == "invoke_agent"]
    assert "exhausted" in run.status.description


def test_async_run_nests_under_the_callers_span(provider):
    tp, exporter = provider
    agent = build_agent(ScriptedLLM(['Action: calculator\nAction Input: {"expression": "2+2"}', "Final Answer: 4"]))
    with tp.get_tracer("app").start_as_current_span("handle request") as request:
        trajectory = asyncio.run(agent.arun("2+2?"))
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if _op(s) == "invoke_agent"]
    assert run.parent.span_id == request.get_span_context().span_id
    _check_tree(_trees([s for s in spans if s.name != "handle request"])[trajectory.id], trajectory)


class EchoLLM:
    """A served-model double that several trajectories can share: each reply depends only on
    its own conversation (one calculator call, then the answer), so lockstep runs interleave."""

    def __init__(self):
        self.info = ModelInfo(backend="openai", name="echo")

    def generate(self, messages, config):
        expression = re.search(r"compute (\S+)", messages[1].content).group(1)
        if len(messages) <= 2:
            text = f'Action: calculator\nAction Input: {{"expression": "{expression}"}}'
        else:
            text = f"Final Answer: {messages[-1].content.split('Observation:')[-1].strip()}"
        return Completion(text=text, finish_reason="stop", prompt_tokens=10 * len(messages),
                          completion_tokens=len(text.split()))


def test_batched_runs_each_get_their_own_tree_under_the_callers_span(provider):
    tp, exporter = provider
    agent = build_agent(EchoLLM())
    questions = ["1+1", "2*3", "10-4", "7*6"]
    with tp.get_tracer("app").start_as_current_span("collect") as collect:
        results = run_batch([Job(agent, f"Please compute {q}") for q in questions], batch_size=4, threads=4)
    assert [t.final_answer for t in results] == ["2", "6", "6", "42"]
    spans = [s for s in exporter.get_finished_spans() if s.name != "collect"]
    trees = _trees(spans)
    assert set(trees) == {t.id for t in results}
    for trajectory in results:
        _check_tree(trees[trajectory.id], trajectory)
    runs = [s for s in spans if _op(s) == "invoke_agent"]
    assert all(r.parent.span_id == collect.get_span_context().span_id for r in runs)
    # Lockstep: the runs overlap in time, yet no span landed in another run's tree.
    assert max(r.start_time for r in runs) < min(r.end_time for r in runs)
    llm_spans = [s for s in spans if _op(s) == "chat"]
    assert all(s.kind.name == "CLIENT" for s in llm_spans)  # a served model: a client call


def test_guided_lockstep_batch_traces_every_primitive(provider, tiny_model_dir):
    from rankact.agent.guided import GuidedConfig
    from rankact.agent.llm.local import TransformersLLM

    _, exporter = provider
    agent = build_agent(TransformersLLM(tiny_model_dir), max_steps=1,
                        guided_config=GuidedConfig(thought_max_tokens=4, input_max_tokens=4, answer_max_tokens=4))
    results = run_batch([Job(agent, q) for q in ["What is 2+2?", "Who wrote Hamlet?"]],
                        batch_size=2)
    trees = _trees(exporter.get_finished_spans())
    assert set(trees) == {t.id for t in results}
    for trajectory in results:
        tree = trees[trajectory.id]
        _check_tree(tree, trajectory)
        primitives = {s.attributes["rankact.llm.primitive"] for s in tree if _op(s) == "text_completion"}
        assert primitives <= {"continue", "score"} and "continue" in primitives
        assert all(s.kind.name == "INTERNAL" for s in tree)  # an in-process model


def test_attribute_names_are_the_semantic_conventions(provider):
    gen_ai = pytest.importorskip("opentelemetry.semconv._incubating.attributes.gen_ai_attributes")
    _, exporter = provider
    build_agent(ScriptedLLM(['Action: calculator\nAction Input: {"expression": "1/0"}', "Final Answer: x"])).run("q")
    used = {k for s in exporter.get_finished_spans() for k in s.attributes if k.startswith("gen_ai.")}
    known = {v for k, v in vars(gen_ai).items() if k.startswith("GEN_AI_") and isinstance(v, str)}
    assert used <= known and {"gen_ai.tool.call.id", "gen_ai.usage.input_tokens"} <= used


def test_uninstrument_stops_tracing(provider):
    _, exporter = provider
    tracing.uninstrument()
    build_agent(ScriptedLLM(["Final Answer: 1"])).run("q")
    assert not tracing.is_on() and exporter.get_finished_spans() == ()


def test_a_stream_stopped_early_still_ends_its_spans(provider):
    _, exporter = provider
    agent = build_agent(ScriptedLLM(['Action: calculator\nAction Input: {"expression": "2+2"}', "Final Answer: 4"]))
    stream = agent.stream("2+2?")
    next(stream)  # the first StepStart, then the caller walks away
    stream.close()
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["invoke_agent rankact", "react_step"]


def test_bad_exporter_names_are_user_errors():
    with pytest.raises(TracingError, match="unknown trace exporter 'jaeger'"):
        tracing.configure("jaeger")


# ---- the process-wide switches, each in a fresh interpreter ---------------------------------
RUN = ("from agent.build import build_agent; from agent.llm.scripted import ScriptedLLM; import sys\n"
       "t = build_agent(ScriptedLLM(['Action: calculator\\nAction Input: {\"expression\": \"6*7\"}', "
       "'Final Answer: 42'])).run('q')\n"
       "print(t.status, t.id, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != tracing.ENV and not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_off_imports_nothing():
    done = _python(RUN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 2)[0] == "finished" and done.stdout.strip().endswith("[]")


def test_environment_variable_prints_spans_as_json_lines():
    done = _python(RUN, RANKACT_OTEL="console", OTEL_SERVICE_NAME="my-app")
    assert done.returncode == 0, done.stderr
    trajectory_id = done.stdout.split()[1]
    spans = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert sorted(s["name"] for s in spans) == sorted(
        ["invoke_agent rankact", "react_step", "react_step", "chat scripted", "chat scripted",
         "execute_tool calculator"])
    assert all(s["attributes"][TID] == trajectory_id for s in spans)
    assert all(s["resource"]["attributes"]["service.name"] == "my-app" for s in spans)


def test_a_bad_environment_value_warns_and_runs_untraced():
    done = _python(RUN, RANKACT_OTEL="zipkin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("finished") and done.stdout.strip().endswith("[]")
    assert "tracing stays off" in done.stderr and "zipkin" in done.stderr


def test_environment_value_1_uses_the_global_provider_the_app_set():
    app = ("from opentelemetry import trace\n"
           "from opentelemetry.sdk.trace import TracerProvider\n"
           "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
           "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
           "exporter = InMemorySpanExporter(); provider = TracerProvider()\n"
           "provider.add_span_processor(SimpleSpanProcessor(exporter)); trace.set_tracer_provider(provider)\n")
    done = _python(app + RUN + "print(sorted(s.name for s in exporter.get_finished_spans()))\n", RANKACT_OTEL="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(sorted(
        ["invoke_agent rankact", "react_step", "react_step", "chat scripted", "chat scripted",
         "execute_tool calculator"]))
    assert "{" not in done.stderr  # nothing went to a console exporter of rankact's own


# ---- red team round 3: tool error text only with content capture on, every attribute bounded ----
def _leaky_agent(description: str = "Fails."):
    from rankact.tools import tool

    @tool(description=description)
    def leaky(text: str) -> str:
        raise RuntimeError("SECRET-CONTENT " * 200_000)  # 3 MB

    return build_agent(ScriptedLLM(['Action: leaky\nAction Input: {"text": "' + "A" * 100_000 + '"}',
                                    "Final Answer: done"]), tools=[leaky])


def test_tool_error_text_stays_out_of_spans_with_capture_off(provider, monkeypatch):
    _, exporter = provider
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    trajectory = _leaky_agent().run("q")
    assert trajectory.steps[0].error.kind == "tool"
    spans = exporter.get_finished_spans()
    assert all("SECRET-CONTENT" not in s.to_json() for s in spans)  # before: 3 MB in two spans
    [tool_span] = [s for s in spans if _op(s) == "execute_tool"]
    assert tool_span.status.status_code is StatusCode.ERROR and tool_span.attributes["error.type"] == "ToolExecutionError"
    assert [e.attributes["exception.type"] for e in tool_span.events] == ["ToolExecutionError"]
    step = next(s for s in spans if s.name == "react_step" and s.attributes["rankact.step.index"] == 0)
    assert step.attributes["error.type"] == "tool" and step.status.description == "tool error"


def test_with_capture_on_tool_content_is_recorded_but_bounded(provider, monkeypatch):
    from rankact.tools.limits import MAX_OBSERVATION_CHARS

    _, exporter = provider
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    _leaky_agent(description="D" * 50_000).run("q")
    spans = exporter.get_finished_spans()
    [tool_span] = [s for s in spans if _op(s) == "execute_tool"]
    assert "SECRET-CONTENT" in tool_span.events[0].attributes["exception.message"]
    assert "SECRET-CONTENT" in tool_span.status.description
    limit = MAX_OBSERVATION_CHARS + 20
    assert len(tool_span.attributes["gen_ai.tool.call.arguments"]) <= limit  # the model sent 100 KB
    assert len(tool_span.attributes["gen_ai.tool.description"]) <= limit
    for span in spans:  # before: 3 MB in the tool span and again in its step span
        assert len(span.to_json()) < 30_000, span.name


def test_the_console_exporter_bounds_attribute_values_unless_told_otherwise(monkeypatch):
    from rankact.agent.tracing_otel import _span_limits

    monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", raising=False)
    assert _span_limits().max_span_attribute_length == 8000
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "123")
    assert _span_limits().max_span_attribute_length == 123


def test_a_native_turn_of_several_calls_gives_one_tool_span_each(provider):
    """Native tool calling runs a turn's calls together (one ToolCalls request); each call is
    its own execute_tool span, ended with its own result (it crashed the tracer before)."""
    from served_stub import Reply, ServedStub, call

    from rankact.agent.llm.openai_http import OpenAICompatibleLLM
    from rankact.agent.loop import Agent
    from rankact.tools import calculator

    _, exporter = provider
    stub = ServedStub([Reply(tool_calls=[call("calculator", {"expression": "17 * 23"}, "call_a"),
                                         call("calculator", {"expression": "2 +"}, "call_b")], text="x"),
                       Reply(text="391")])
    with stub as url:
        trajectory = Agent(OpenAICompatibleLLM(url, max_retries=0), [calculator], format="native").run("q")
    assert trajectory.status == "finished" and trajectory.final_answer == "391"
    tools = [s for s in exporter.get_finished_spans() if s.name == "execute_tool calculator"]
    assert len(tools) == 2
    statuses = sorted(s.status.status_code.name for s in tools)
    assert statuses == ["ERROR", "UNSET"]  # "2 +" failed, "17 * 23" did not
