"""The agent loop in the native tool-calling format (`Agent(format="native")`).

The server gets the tools' JSON Schemas (`tools`) and answers with `tool_calls`, the way
most served models call tools today; no ReAct text is parsed. One turn is one chat request:

- a reply with tool calls: each call's arguments are parsed as a JSON object and validated
  against the tool's schema BEFORE anything runs; the valid calls of the turn run
  concurrently (one `ToolCalls` request); every call gets one `tool` message back, its result
  or its error with a hint, so the model can fix a malformed call;
- a reply without tool calls: its text is the final answer (an empty one counts as a format
  error, as in the ReAct loop).

The trajectory keeps the same fields as a ReAct run: one `Step` per call with `thought` = the
assistant's text of that turn, `action` / `action_input` / `observation`, and `call_id`; the
segments are prompt | generated (the turn's text and calls) | observation (one per call). They
carry no token ids (`exact_token_ids` False): training on them needs `--retokenize`.
The same budgets as the ReAct loop apply: `max_steps` turns, then one forced answer without
tools; the same call `loop_limit` times in a row ends with status "loop".
"""
from __future__ import annotations

import json
import time
from collections.abc import Generator
from typing import Any, Protocol

from rankact.agent import events as ev
from rankact.agent.citations import select_citations
from rankact.agent.errors import RankactError
from rankact.agent.llm.base import ChatMessage, Completion, GenerationConfig, NativeToolCall
from rankact.agent.llm.tool_calls import tool_specs, wire_calls
from rankact.agent.observations import LOOP_MESSAGE, RepeatCounter, UnknownToolError, observe
from rankact.agent.requests import Chat, ToolCall, ToolCalls, call_config, received
from rankact.agent.trajectory import Segment, Step, StepError, Trajectory

NATIVE_PROMPT_VERSION = "native-v1"
NATIVE_SYSTEM = ("You are a helpful assistant. Answer the question, calling the tools when they help. "
                 "When you know the answer, reply with the short answer only.")
NATIVE_FORCE = "You have no steps left. Reply now with your best short answer, without calling a tool."
EMPTY_REPLY = "the reply has neither text nor a tool call"


def supports_native(llm: Any) -> bool:
    """Backends that declare native tool calling (OpenAI-compatible chat servers)."""
    return bool(getattr(llm, "native_tools", False))


def _answer_text(text: str) -> str:
    """The reply as an answer; a model trained on ReAct may still write 'Final Answer:'."""
    text = text.strip()
    _head, sep, tail = text.rpartition("Final Answer:")
    return tail.strip() if sep else text


def _render_call(call: NativeToolCall) -> str:
    return json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)


def _arguments(call: NativeToolCall) -> dict[str, Any]:
    """The call's arguments as a JSON object, or a ToolArgumentError saying what is wrong."""
    from rankact.tools.base import ToolArgumentError  # on call: `rankact.tools` pulls in httpx

    text = call.arguments.strip() or "{}"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ToolArgumentError(f"arguments for tool '{call.name}' are not valid JSON ({exc.msg} at "
                                f"character {exc.pos}): {text[:80]}") from None
    if not isinstance(value, dict):
        raise ToolArgumentError(f"arguments for tool '{call.name}' must be a JSON object, "
                                f"got {type(value).__name__}")
    return value


class NativeHost(Protocol):
    """What the native loop needs of the `Agent` running it (declared here, as this module sits
    below `rankact.agent.loop` and must not import it)."""

    tools: list[Any]
    max_steps: int
    max_parse_errors: int
    loop_limit: int
    forced_final_answer: bool
    system_prompt_template: str | None

    def new_trajectory(self, trajectory_id: str, question: str, sampling: GenerationConfig, prompt_version: str,
                       **sampling_notes: Any) -> Trajectory: ...


class _Run:
    """The state of one native run: messages sent, trajectory being recorded."""

    def __init__(self, agent: NativeHost, question: str, sampling: GenerationConfig, trajectory_id: str) -> None:
        self.agent = agent
        self.tools = {t.name: t for t in agent.tools}
        self.traj = agent.new_trajectory(trajectory_id, question, sampling, NATIVE_PROMPT_VERSION, guided=False,
                                         format="native")
        self.traj.exact_token_ids = False
        system = agent.system_prompt_template or NATIVE_SYSTEM
        self.messages = [ChatMessage(role="system", content=system), ChatMessage(role="user", content=question)]
        self.specs = tool_specs(agent.tools)
        self.results: list[Any] = []  # ToolResults, for citations
        self.repeats = RepeatCounter()
        self.traj.segments.append(Segment(role="prompt", text="".join(
            f"<{m.role}>\n{m.content}\n" for m in self.messages)))

    def new_step(self, turn_started: float, thought: str | None, forced: bool, raw: str) -> Step:
        step = Step(index=len(self.traj.steps), thought=thought, forced_answer=forced, raw=raw)
        self.traj.steps.append(step)
        step.seconds = time.perf_counter() - turn_started
        return step


def native_core(agent: NativeHost, question: str, sampling: GenerationConfig, trajectory_id: str) -> Generator[Any, Any, None]:
    """`Agent.core` for format "native": yields `Chat` (with tools) and `ToolCalls` requests and
    the same events as the ReAct loop, ending with `Done`."""
    started = time.perf_counter()
    run = _Run(agent, question, sampling, trajectory_id)
    traj, usage = run.traj, run.traj.usage
    status, ending, format_errors = "max_steps", False, 0
    for turn in range(agent.max_steps + 2):
        forced = ending or turn >= agent.max_steps
        if forced and (not agent.forced_final_answer or turn > agent.max_steps and not ending):
            break
        yield ev.StepStart(index=len(traj.steps), forced_answer=forced)
        turn_started = time.perf_counter()
        if forced:
            run.messages.append(ChatMessage(role="user", content=NATIVE_FORCE))
            traj.segments.append(Segment(role="prompt", text=f"<user>\n{NATIVE_FORCE}\n"))
        try:
            reply: Completion = received((yield Chat(list(run.messages), call_config(sampling, turn),
                                                     tools=None if forced else run.specs)))
        except RankactError as exc:
            # An outage, not the model's output: marked so collect retries it instead of storing it.
            traj.steps.append(Step(index=len(traj.steps), forced_answer=forced,
                                   error=StepError(kind="backend", message=str(exc))))
            traj.metadata["error"] = str(exc)
            yield ev.Error(index=len(traj.steps) - 1, kind="backend", message=str(exc))
            status = "error"
            break
        usage.llm_calls += 1
        usage.prompt_tokens += reply.prompt_tokens
        usage.completion_tokens += reply.completion_tokens
        usage.llm_seconds += time.perf_counter() - turn_started
        calls = [] if forced else list(reply.tool_calls or [])
        thought = reply.text.strip() or None
        raw = reply.text + "".join("\n" + _render_call(c) for c in calls)
        traj.segments.append(Segment(role="generated", text=raw))
        run.messages.append(ChatMessage(role="assistant", content=reply.text,
                                        tool_calls=wire_calls(calls) if calls else None))

        if not calls:
            answer = _answer_text(reply.text)
            step = run.new_step(turn_started, None, forced, raw)
            if thought and answer != thought:
                step.thought = thought
            if not answer:  # neither an answer nor a call: the native form of a parse error
                format_errors += 1
                step.error = StepError(kind="parse", message=EMPTY_REPLY)
                step.observation = f"Invalid reply: {EMPTY_REPLY}. Call a tool or reply with the answer."
                yield ev.Error(index=step.index, kind="parse", message=EMPTY_REPLY)
                yield ev.Observation(index=step.index, text=step.observation, is_error=True)
                run.messages.append(ChatMessage(role="user", content=step.observation))
                traj.segments.append(Segment(role="observation", text=f"<user>\n{step.observation}\n"))
                if format_errors >= agent.max_parse_errors or forced:
                    status = "error" if format_errors >= agent.max_parse_errors else status
                    break
                continue
            step.final_answer = traj.final_answer = answer
            if step.thought:
                yield ev.Thought(index=step.index, text=step.thought)
            yield ev.FinalAnswer(index=step.index, text=answer, forced=forced)
            status = status if forced else "finished"
            break

        if thought:
            yield ev.Thought(index=len(traj.steps), text=thought)
        status, ending = yield from _run_calls(run, calls, thought, raw, turn_started, status, ending)

    traj.status = status
    traj.citations = select_citations(traj.final_answer, run.results) if traj.final_answer else []
    usage.seconds = time.perf_counter() - started
    yield ev.Done(status=status, trajectory=traj)


def _run_calls(run: _Run, calls: list[NativeToolCall], thought: str | None, raw: str, turn_started: float,
               status: str, ending: bool) -> Generator[Any, Any, tuple[str, bool]]:
    """Validate every call of a turn, run the valid ones together, answer each with a tool message."""
    agent, traj = run.agent, run.traj
    steps, pending = [], []
    outcome: dict[int, Any] = {}  # id(step) -> its ToolResult or exception; loop steps have none
    for call in calls:
        step = run.new_step(turn_started, thought, False, raw)
        step.action, step.call_id = call.name, call.id
        steps.append(step)
        tool = run.tools.get(call.name)
        try:
            if tool is None:
                raise UnknownToolError(f"unknown tool '{call.name}'; available: {', '.join(run.tools) or 'none'}")
            args = tool.validate(_arguments(call))
            step.action_input = args.model_dump(mode="json")
        except Exception as exc:  # noqa: BLE001 - ToolArgumentError and anything a custom validate raises
            step.action_input = call.arguments
            outcome[id(step)] = exc  # answered like a failed call, with nothing run
            continue
        if run.repeats.count(call.name, step.action_input) >= agent.loop_limit:
            status, ending = "loop", True  # not run again; the forced answer comes next
            step.observation = LOOP_MESSAGE
            continue
        pending.append((step, ToolCall(tool, args)))

    for step in steps:
        yield ev.Action(index=step.index, tool=step.action, input=step.action_input)
    tool_started = time.perf_counter()
    results = (yield ToolCalls([c for _, c in pending])) if pending else []
    traj.usage.tool_seconds += time.perf_counter() - tool_started
    outcome.update(zip((id(s) for s, _ in pending), results, strict=True))

    repeated = run.repeats.repeats >= 2
    for step in steps:
        if id(step) in outcome:
            result = outcome[id(step)]
            if not isinstance(result, BaseException):
                run.results.append(result)
            yield from observe(step, result, fix="Fix the arguments.", repeated=repeated and step is steps[-1])
        else:
            yield ev.Observation(index=step.index, text=step.observation, is_error=True)
        run.messages.append(ChatMessage(role="tool", content=step.observation, tool_call_id=step.call_id))
        traj.segments.append(Segment(role="observation", text=f"<tool {step.call_id}>\n{step.observation}\n"))
        step.seconds = time.perf_counter() - turn_started
    return status, ending


__all__ = ["NATIVE_PROMPT_VERSION", "native_core", "supports_native"]
