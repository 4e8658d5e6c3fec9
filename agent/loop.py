"""`Agent`: the ReAct loop, with sync, streaming and async front ends over one core.

The core (`core`) is a generator that never does I/O itself: it yields requests (the LLM
primitives `Continue`, `Score` and `Chat`, and `ToolCall`) and typed events, and receives
the requests' answers back. The sync driver answers requests inline; the async driver runs
LLM requests in a thread (`asyncio.to_thread`) and awaits tools natively; the lockstep driver
(`rankact.agent.batch`) answers the requests of many trajectories together, one batched forward per
primitive. So `run`, `stream`, `arun`, `astream` and `run_batch` share every rule below, and
none of them can drift from the others.

Rules: a parse error becomes an observation with a format hint and spends the parse-error
budget (exhausted: status "error", never the parse text as the answer); invalid arguments,
tool exceptions and timeouts become observations and are recorded as `step.error`; the same
action with the same input `loop_limit` times in a row ends with status "loop"; reaching
`max_steps` ends with status "max_steps", after one optional forced-answer call. A failed
LLM call (the backend, not the model) ends with status "error" and a `backend` step error.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rankact.agent import events as ev
from rankact.agent import tracing
from rankact.agent.citations import select_citations
from rankact.agent.errors import RankactError
from rankact.agent.guided import (
    Continue,
    GuidedConfig,
    GuidedDecoder,
    Score,
    answer,
    received,
    supports_guidance,
)
from rankact.agent.llm import LLM, Completion, GenerationConfig
from rankact.agent.parser import ParsedAction, ParsedFinal, ParseError, parse_step
from rankact.agent.prompt import (
    FORCE_ANSWER_MESSAGE,
    PROMPT_VERSION,
    build_messages,
    render_observation,
    render_step,
    system_prompt,
)
from rankact.agent.token_decoder import TokenDecoder, exact_tokens
from rankact.agent.trajectory import ModelRef, Segment, Step, StepError, ToolRef, Trajectory, new_id
from rankact.tools.limits import MAX_OBSERVATION_CHARS
from rankact.tools.names import check_tool_names

REPEAT_HINT = "(You already ran this exact action. Use its result, or give the Final Answer.)"
LOOP_MESSAGE = "You keep repeating the same action with the same input; it was not run again."
DEFAULT_GENERATION = GenerationConfig(max_new_tokens=256, stop=["Observation:"])
# Tool-using steps before the forced answer, for every command and trainer (`rankact.agent.build`).
DEFAULT_MAX_STEPS = 5


@dataclass
class Chat:
    """Request (unguided runs): `llm.generate(messages, config)`; answered with a `Completion`."""

    messages: list
    config: GenerationConfig
    tools: list[dict] | None = None  # native tool calling: the tools' schemas sent with the request


LLM_REQUESTS = (Continue, Score, Chat)


@dataclass
class ToolCall:
    tool: Any
    args: Any


class ToolCalls(ToolCall):
    """Request: the calls of one native turn, run concurrently; answered with one result per
    call (a ToolResult or the exception it ended with). Drivers treat it as a `ToolCall`."""

    def __init__(self, calls: Sequence[ToolCall]) -> None:
        super().__init__(tool=None, args=None)
        self.calls = list(calls)


@dataclass
class _LLMOutcome:
    parsed: ParsedAction | ParsedFinal | None = None
    error: ParseError | None = None
    raw: str = ""
    completion: Completion | None = None
    failure: str | None = None  # the backend failed


def _default_tools() -> list[Any]:
    from rankact.tools import default_tools

    return list(default_tools())


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _short(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " ...(truncated)"


def _error_kind(exc: Exception) -> str:
    from rankact.tools.base import ToolArgumentError, ToolTimeoutError

    if isinstance(exc, ToolArgumentError):
        return "validation"
    if isinstance(exc, ToolTimeoutError | TimeoutError | concurrent.futures.TimeoutError):
        return "timeout"
    return "tool"


class Agent:
    """A ReAct agent over an LLM backend and typed tools."""

    def __init__(
        self,
        llm: LLM,
        tools: Sequence[Any] | None = None,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        guided: bool | None = None,
        max_parse_errors: int = 3,
        loop_limit: int = 3,
        forced_final_answer: bool = True,
        system_prompt: str | None = None,
        generation: GenerationConfig | None = None,
        tool_timeout: float | None = None,
        guided_config: GuidedConfig | None = None,
        format: str = "react",
    ) -> None:
        if max_steps < 1 or max_parse_errors < 1 or loop_limit < 2:
            raise ValueError("max_steps and max_parse_errors must be >= 1, loop_limit >= 2")
        self.llm = llm
        self.tools = list(_default_tools() if tools is None else tools)
        check_tool_names(self.tools)  # ToolNameError (a ValueError): unusable names, or two differing only by case
        self.max_steps = max_steps
        can_guide = supports_guidance(llm)
        if guided and not can_guide:
            raise ValueError("guided decoding needs a local backend (continue_ids / score_continuations)")
        self.guided = can_guide if guided is None else guided
        if format not in ("react", "native") or format == "native" and self.guided:
            raise ValueError("format is 'react' or 'native' (native: served models, not guided decoding)")
        self.format = format  # "native": the server's tool calls (`rankact.agent.native_tools`)
        self.max_parse_errors = max_parse_errors
        self.loop_limit = loop_limit
        self.forced_final_answer = forced_final_answer
        self.system_prompt_template = system_prompt
        self.generation = generation or DEFAULT_GENERATION
        self.tool_timeout = tool_timeout
        self.guided_config = guided_config or GuidedConfig()

    # ---- public API -----------------------------------------------------------------
    def run(self, question: str, **sampling: Any) -> Trajectory:
        """Answer `question`; never raises for model or tool misbehaviour (see status)."""
        for event in self.stream(question, **sampling):
            if isinstance(event, ev.Done):
                return event.trajectory
        raise AssertionError("the agent loop ended without a Done event")

    def stream(
        self, question: str, *, temperature: float | None = None, seed: int | None = None, top_p: float | None = None
    ) -> Iterator[ev.Event]:
        core = self.core(question, self.sampling(temperature, seed, top_p))
        value: Any = None
        while True:
            try:
                item = core.send(value)
            except StopIteration:
                return
            value = None
            if isinstance(item, LLM_REQUESTS):
                value = self.answer(item)
            elif isinstance(item, ToolCall):
                value = self.call_tool(item)
            else:
                yield item

    async def arun(self, question: str, **sampling: Any) -> Trajectory:
        async for event in self.astream(question, **sampling):
            if isinstance(event, ev.Done):
                return event.trajectory
        raise AssertionError("the agent loop ended without a Done event")

    async def astream(
        self, question: str, *, temperature: float | None = None, seed: int | None = None, top_p: float | None = None
    ) -> AsyncIterator[ev.Event]:
        core = self.core(question, self.sampling(temperature, seed, top_p))
        value: Any = None
        while True:
            try:
                item = core.send(value)
            except StopIteration:
                return
            value = None
            if isinstance(item, LLM_REQUESTS):
                value = await asyncio.to_thread(self.answer, item)
            elif isinstance(item, ToolCall):
                value = await self._acall_tool(item)
            else:
                yield item

    # ---- requests the core yields -----------------------------------------------------
    def answer(self, request: Continue | Score | Chat) -> Any:
        """Carry out one LLM request; a failure is returned (and raised inside the core)."""
        try:
            if isinstance(request, Chat):
                tools = {"tools": request.tools} if request.tools is not None else {}
                return self.llm.generate(request.messages, request.config, **tools)
            return answer(self.llm, request)
        except Exception as exc:  # noqa: BLE001 - the core decides what a failure means
            return exc

    def call_tool(self, call: ToolCall) -> Any:
        """A ToolResult, or the exception the call ended with (a list of them for `ToolCalls`)."""
        if isinstance(call, ToolCalls):
            if len(call.calls) <= 1:
                return [self.call_tool(c) for c in call.calls]
            with concurrent.futures.ThreadPoolExecutor(len(call.calls), thread_name_prefix="rankact-tools") as pool:
                return list(pool.map(self.call_tool, call.calls))
        try:
            if self.tool_timeout is None:
                return call.tool.invoke(call.args)
            # Daemon thread: a hung tool cannot be killed, but it must not block the run or exit.
            future: concurrent.futures.Future = concurrent.futures.Future()

            def target() -> None:
                try:
                    future.set_result(call.tool.invoke(call.args))
                except BaseException as exc:  # noqa: BLE001 - handed back to the loop
                    future.set_exception(exc)

            threading.Thread(target=target, name="rankact-agent-tool", daemon=True).start()
            return future.result(timeout=self.tool_timeout)
        except concurrent.futures.TimeoutError:
            return TimeoutError(f"tool '{call.tool.name}' timed out after {self.tool_timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - every tool failure becomes an observation
            return exc

    async def _acall_tool(self, call: ToolCall) -> Any:
        if isinstance(call, ToolCalls):
            return list(await asyncio.gather(*(self._acall_tool(c) for c in call.calls)))
        try:
            if self.tool_timeout is None:
                return await call.tool.ainvoke(call.args)
            return await asyncio.wait_for(call.tool.ainvoke(call.args), self.tool_timeout)
        except TimeoutError:
            return TimeoutError(f"tool '{call.tool.name}' timed out after {self.tool_timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - every tool failure becomes an observation
            return exc

    # ---- the core -------------------------------------------------------------------
    def sampling(self, temperature: float | None, seed: int | None, top_p: float | None) -> GenerationConfig:
        update = {k: v for k, v in {"temperature": temperature, "seed": seed, "top_p": top_p}.items() if v is not None}
        return GenerationConfig.model_validate({**self.generation.model_dump(), **update})

    def _call_config(self, sampling: GenerationConfig, index: int) -> GenerationConfig:
        seed = None if sampling.seed is None else sampling.seed * 1000 + index
        return sampling.model_copy(update={"seed": seed})

    @staticmethod
    def _unguided_step(messages: list, config: GenerationConfig, names: list[str]) -> Generator[Chat, Any, _LLMOutcome]:
        try:
            completion = received((yield Chat(messages, config)))
        except RankactError as exc:
            return _LLMOutcome(failure=str(exc))
        out = _LLMOutcome(raw=completion.text, completion=completion)
        try:
            out.parsed = parse_step(completion.text, names)
        except ParseError as exc:
            out.error = exc
        return out

    @staticmethod
    def _guided_step(decoder: GuidedDecoder, forced: bool) -> Generator[Continue | Score, Any, _LLMOutcome]:
        try:
            parsed = yield from decoder.step_requests(forced_answer=forced)
            return _LLMOutcome(parsed=parsed, raw=decoder.step_text)
        except ParseError as exc:
            return _LLMOutcome(error=exc, raw=decoder.step_text)
        except RankactError as exc:
            return _LLMOutcome(failure=str(exc), raw=decoder.step_text)

    def core(self, question: str, sampling: GenerationConfig) -> Generator[Any, Any, None]:
        """One run as the generator of requests and events every driver shares (traced if on)."""
        trajectory_id = new_id()  # known before the first step, so every span can carry it
        if self.format == "native":
            from rankact.agent.native_tools import native_core

            run = native_core(self, question, sampling, trajectory_id)
        else:
            run = self._core(question, sampling, trajectory_id)
        return tracing.traced(run, self, trajectory_id)

    def new_trajectory(self, trajectory_id: str, question: str, sampling: GenerationConfig, prompt_version: str,
                       **sampling_notes: Any) -> Trajectory:
        """The record a run fills in: who answered (model, tools, prompt version) and how it sampled.
        Both loops (ReAct here, native tool calls in `rankact.agent.native_tools`) start from it."""
        info = self.llm.info
        return Trajectory(
            id=trajectory_id,
            question=question,
            model=ModelRef(backend=info.backend, name=info.name, revision=info.revision),
            prompt_version=prompt_version,
            tools=[ToolRef(name=t.name, schema_hash=t.schema_hash) for t in self.tools],
            sampling={"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
                      **sampling_notes},
        )

    def _core(self, question: str, sampling: GenerationConfig, trajectory_id: str) -> Generator[Any, Any, None]:
        started = time.perf_counter()
        tools = {t.name: t for t in self.tools}
        names = list(tools)
        traj = self.new_trajectory(trajectory_id, question, sampling, PROMPT_VERSION, guided=self.guided)
        usage = traj.usage
        system = system_prompt(self.tools, self.system_prompt_template)
        turns: list[tuple[str, str]] = []  # unguided: (clean step, observation) pairs
        decoder: GuidedDecoder | None = None
        if self.guided or exact_tokens(self.llm):  # one growing token sequence
            decoder = (GuidedDecoder(self.llm, self.tools, sampling=sampling, config=self.guided_config)
                       if self.guided else TokenDecoder(self.llm, sampling=sampling, generation=self.generation,
                                                   tools=self.tools))
            decoder.start(build_messages(system, question, []))
            traj.segments = decoder.segments  # the decoder appends to the trajectory's list
        results: list[Any] = []  # ToolResults, for citations
        parse_errors, last_key, repeats = 0, None, 0
        status = "max_steps"  # what a run that is not finished ends with; "loop" once detected
        ending = False  # set when a loop is detected: the next call is the forced answer

        for index in range(self.max_steps + 2):
            forced = ending or index >= self.max_steps
            if forced and (not self.forced_final_answer or index > self.max_steps and not ending):
                break
            yield ev.StepStart(index=index, forced_answer=forced)
            step_started = time.perf_counter()
            if decoder is not None:
                outcome = yield from self._guided_step(decoder, forced)
                usage.prompt_tokens, usage.completion_tokens = decoder.prompt_tokens, decoder.completion_tokens
                usage.llm_calls = decoder.calls
            else:
                messages = build_messages(system, question, turns)
                if forced:  # appended to the last user message: some servers reject two in a row
                    last = messages[-1]
                    messages[-1] = last.model_copy(update={"content": last.content + "\n\n" + FORCE_ANSWER_MESSAGE})
                if index == 0:
                    self._record_prompt(traj, messages)
                elif forced:
                    self._add_segment(traj, "prompt", "\n" + FORCE_ANSWER_MESSAGE + "\n")
                config = self._call_config(sampling, index)
                outcome = yield from self._unguided_step(messages, config, names)
                usage.llm_calls += 1
                if outcome.completion is not None:
                    c = outcome.completion
                    usage.prompt_tokens += c.prompt_tokens
                    usage.completion_tokens += c.completion_tokens
                    traj.segments.append(Segment(role="generated", text=c.text, token_ids=c.token_ids))
            llm_seconds = time.perf_counter() - step_started
            usage.llm_seconds += llm_seconds
            step = Step(index=index, raw=outcome.raw, forced_answer=forced)
            traj.steps.append(step)

            if outcome.failure is not None:
                traj.metadata["error"] = outcome.failure
                step.error = StepError(kind="backend", message=outcome.failure)
                yield ev.Error(index=index, kind="backend", message=outcome.failure)
                status = "error"
                break

            if outcome.error is not None:  # the model broke the format
                parse_errors += 1
                err = outcome.error
                step.error = StepError(kind="parse", message=err.message)
                step.observation = f"Invalid format: {err.message}. {err.hint}"
                yield ev.Error(index=index, kind="parse", message=err.message)
                yield ev.Observation(index=index, text=step.observation, is_error=True)
                self._feed_back(traj, decoder, turns, outcome.raw.strip()[:500], step.observation, error=True)
                step.seconds = time.perf_counter() - step_started
                if parse_errors >= self.max_parse_errors or forced:
                    status = "error" if parse_errors >= self.max_parse_errors else status
                    break
                continue

            parsed = outcome.parsed
            step.thought = parsed.thought
            if parsed.thought:
                yield ev.Thought(index=index, text=parsed.thought)

            if isinstance(parsed, ParsedFinal):
                step.final_answer = traj.final_answer = parsed.answer
                step.seconds = time.perf_counter() - step_started
                yield ev.FinalAnswer(index=index, text=parsed.answer, forced=forced)
                status = status if forced else "finished"
                break

            # An action.
            step.action = parsed.action
            step.action_input = parsed.action_input
            if forced:  # asked for an answer, got an action: no answer this run
                step.seconds = time.perf_counter() - step_started
                break
            tool = tools[parsed.action]
            args, result = None, None
            try:  # validated first, so "2+2" and {"expression": "2+2"} count as the same call
                args = tool.validate(parsed.action_input)
                step.action_input = args.model_dump(mode="json")
            except Exception as exc:  # noqa: BLE001 - ToolArgumentError and anything a custom validate raises
                result = exc
            key = (parsed.action, _canonical(step.action_input))
            repeats = repeats + 1 if key == last_key else 1
            last_key = key
            yield ev.Action(index=index, tool=parsed.action, input=step.action_input)
            if repeats >= self.loop_limit:
                # Not run again; the forced answer (if enabled) comes next, status stays "loop".
                status, ending = "loop", True
                step.observation = LOOP_MESSAGE
                yield ev.Observation(index=index, text=step.observation, is_error=True)
                clean = render_step(parsed.thought, parsed.action, step.action_input)
                self._feed_back(traj, decoder, turns, clean, step.observation, error=True)
                step.seconds = time.perf_counter() - step_started
                continue

            tool_started = time.perf_counter()
            if args is not None:
                result = yield ToolCall(tool, args)
            usage.tool_seconds += time.perf_counter() - tool_started

            if isinstance(result, Exception):
                kind = _error_kind(result)
                message = _short(str(result) or type(result).__name__)  # errors are bounded as results are
                step.error = StepError(kind=kind, message=message)
                hint = "Fix the Action Input." if kind == "validation" else "Try a different input or tool, or answer."
                step.observation = f"Error: {message}. {hint}"
                yield ev.Error(index=index, kind=kind, message=message)
            else:
                results.append(result)
                step.observation = _short(result.text)
                if repeats >= 2:
                    step.observation += " " + REPEAT_HINT
            yield ev.Observation(index=index, text=step.observation, is_error=step.error is not None)
            clean = render_step(parsed.thought, parsed.action, step.action_input)
            self._feed_back(traj, decoder, turns, clean, step.observation, error=step.error is not None)
            step.seconds = time.perf_counter() - step_started

        traj.status = status
        traj.exact_token_ids = decoder is not None or (
            len(traj.steps) <= 1 and all(s.token_ids is not None for s in traj.segments))
        traj.citations = select_citations(traj.final_answer, results) if traj.final_answer else []
        usage.seconds = time.perf_counter() - started
        yield ev.Done(status=status, trajectory=traj)

    # ---- transcript bookkeeping (unguided) --------------------------------------------
    def _feed_back(self, traj: Trajectory, decoder: GuidedDecoder | None, turns: list, assistant: str,
                   observation: str, *, error: bool) -> None:
        if decoder is not None:
            decoder.observe(observation)
            if error:
                decoder.note_error()
            return
        turns.append((assistant, render_observation(observation)))
        self._add_segment(traj, "observation", "\n" + render_observation(observation) + "\n")

    def _add_segment(self, traj: Trajectory, role: str, text: str) -> None:
        encode = getattr(self.llm, "encode", None)
        traj.segments.append(Segment(role=role, text=text, token_ids=encode(text) if callable(encode) else None))

    def _record_prompt(self, traj: Trajectory, messages: list) -> None:
        render = getattr(self.llm, "render_prompt", None)
        if callable(render):
            text = render(messages)
        else:
            text = "".join(f"<{m.role}>\n{m.content}\n" for m in messages)
        self._add_segment(traj, "prompt", text)
