"""`Agent`: the ReAct loop, with sync, streaming and async front ends over one core.

The core (`core`) is a generator that never does I/O itself: it yields requests (the LLM
primitives `Continue`, `Score` and `Chat`, and `ToolCall`, all in `rankact.agent.requests`)
and typed events, and receives the requests' answers back. The sync driver answers requests inline; the async driver runs
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

Where the pieces live: how a step is asked of the model and how its observation goes back
(guided, token-in/token-out or chat) is the run's `Transcript` (`rankact.agent.transcripts`),
chosen once when the run starts; how a tool's result or failure reads to the model is
`rankact.agent.observations`, shared with the native tool-calling loop
(`rankact.agent.native_tools`), which `core` runs instead for `format="native"`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rankact.agent import events as ev
from rankact.agent import tracing
from rankact.agent.citations import select_citations
from rankact.agent.guided import GuidedConfig, supports_guidance
from rankact.agent.llm import LLM, GenerationConfig
from rankact.agent.native_tools import native_core
from rankact.agent.observations import LOOP_MESSAGE, RepeatCounter, observe
from rankact.agent.parser import ParsedAction, ParsedFinal
from rankact.agent.prompt import PROMPT_VERSION, render_step, system_prompt
from rankact.agent.requests import LLM_REQUESTS, Chat, Continue, Score, ToolCall, ToolCalls, answer_request
from rankact.agent.trajectory import ModelRef, Step, StepError, ToolRef, Trajectory, new_id
from rankact.agent.transcripts import StepOutcome, Transcript, open_transcript

DEFAULT_GENERATION = GenerationConfig(max_new_tokens=256, stop=["Observation:"])
# Tool-using steps before the forced answer, for every command and trainer (`rankact.agent.build`).
DEFAULT_MAX_STEPS = 5


@dataclass
class _ReactRun:
    """The state one ReAct run carries from step to step."""

    traj: Trajectory
    transcript: Transcript
    tools: dict[str, Any]
    results: list[Any] = field(default_factory=list)  # ToolResults, for citations
    repeats: RepeatCounter = field(default_factory=RepeatCounter)
    parse_errors: int = 0
    status: str = "max_steps"  # what a run that is not finished ends with; "loop" once detected
    ending: bool = False  # set when a loop is detected: the next call is the forced answer


def _default_tools() -> list[Any]:
    # On call: `rankact.tools` pulls in httpx, and the CLI imports this module for its constants.
    from rankact.tools import default_tools

    return list(default_tools())


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
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tool names: {names}")
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
        self.tool_timeout = tool_timeout  # a cap on every tool's own timeout, applied by `Tool.invoke`
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
            return answer_request(self.llm, request)
        except Exception as exc:  # noqa: BLE001 - the core decides what a failure means
            return exc

    def call_tool(self, call: ToolCall) -> Any:
        """A ToolResult, or the exception the call ended with (a list of them for `ToolCalls`).
        `tool_timeout` is handed to the tool as a cap: `Tool.invoke` is the one timeout layer."""
        if isinstance(call, ToolCalls):
            if len(call.calls) <= 1:
                return [self.call_tool(c) for c in call.calls]
            with concurrent.futures.ThreadPoolExecutor(len(call.calls), thread_name_prefix="rankact-tools") as pool:
                return list(pool.map(self.call_tool, call.calls))
        try:
            return call.tool.invoke(call.args, timeout_cap=self.tool_timeout)
        except Exception as exc:  # noqa: BLE001 - every tool failure becomes an observation
            return exc

    async def _acall_tool(self, call: ToolCall) -> Any:
        if isinstance(call, ToolCalls):
            return list(await asyncio.gather(*(self._acall_tool(c) for c in call.calls)))
        try:
            return await call.tool.ainvoke(call.args, timeout_cap=self.tool_timeout)
        except Exception as exc:  # noqa: BLE001 - every tool failure becomes an observation
            return exc

    # ---- the core -------------------------------------------------------------------
    def sampling(self, temperature: float | None, seed: int | None, top_p: float | None) -> GenerationConfig:
        update = {k: v for k, v in {"temperature": temperature, "seed": seed, "top_p": top_p}.items() if v is not None}
        return GenerationConfig.model_validate({**self.generation.model_dump(), **update})

    def core(self, question: str, sampling: GenerationConfig) -> Generator[Any, Any, None]:
        """One run as the generator of requests and events every driver shares (traced if on)."""
        trajectory_id = new_id()  # known before the first step, so every span can carry it
        if self.format == "native":
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
        """The ReAct loop: ask the transcript for a step, settle it, until an ending."""
        started = time.perf_counter()
        traj = self.new_trajectory(trajectory_id, question, sampling, PROMPT_VERSION, guided=self.guided)
        transcript = open_transcript(
            self.llm, self.tools, traj, system=system_prompt(self.tools, self.system_prompt_template),
            question=question, sampling=sampling, generation=self.generation, guided=self.guided,
            guided_config=self.guided_config)
        run = _ReactRun(traj, transcript, {t.name: t for t in self.tools})

        for index in range(self.max_steps + 2):
            forced = run.ending or index >= self.max_steps
            if forced and (not self.forced_final_answer or index > self.max_steps and not run.ending):
                break
            yield ev.StepStart(index=index, forced_answer=forced)
            step_started = time.perf_counter()
            outcome = yield from transcript.step(index, forced)
            traj.usage.llm_seconds += time.perf_counter() - step_started
            step = Step(index=index, raw=outcome.raw, forced_answer=forced)
            traj.steps.append(step)
            if (yield from self._settle(run, step, outcome, forced, step_started)):
                break

        traj.status = run.status
        traj.exact_token_ids = transcript.exact_token_ids()
        traj.citations = select_citations(traj.final_answer, run.results) if traj.final_answer else []
        traj.usage.seconds = time.perf_counter() - started
        yield ev.Done(status=run.status, trajectory=traj)

    def _settle(self, run: _ReactRun, step: Step, outcome: StepOutcome, forced: bool,
                step_started: float) -> Generator[Any, Any, bool]:
        """Record what the model produced for `step` (running its action); True ends the run."""
        if outcome.failure is not None:  # the backend failed: no step.seconds, as nothing was settled
            run.traj.metadata["error"] = outcome.failure
            step.error = StepError(kind="backend", message=outcome.failure)
            yield ev.Error(index=step.index, kind="backend", message=outcome.failure)
            run.status = "error"
            return True
        if outcome.error is not None:  # the model broke the format
            ends = yield from self._format_error(run, step, outcome, forced)
        elif isinstance(outcome.parsed, ParsedFinal):
            ends = yield from self._final(run, step, outcome.parsed, forced)
        else:
            ends = yield from self._act(run, step, outcome.parsed, forced)
        step.seconds = time.perf_counter() - step_started
        return ends

    def _format_error(self, run: _ReactRun, step: Step, outcome: StepOutcome,
                      forced: bool) -> Generator[Any, Any, bool]:
        run.parse_errors += 1
        err = outcome.error
        step.error = StepError(kind="parse", message=err.message)
        step.observation = f"Invalid format: {err.message}. {err.hint}"
        yield ev.Error(index=step.index, kind="parse", message=err.message)
        yield ev.Observation(index=step.index, text=step.observation, is_error=True)
        run.transcript.feed_back(outcome.raw.strip()[:500], step.observation, error=True)
        if run.parse_errors >= self.max_parse_errors:
            run.status = "error"  # the budget is spent: never the parse text as the answer
        return run.parse_errors >= self.max_parse_errors or forced

    def _final(self, run: _ReactRun, step: Step, parsed: ParsedFinal, forced: bool) -> Generator[Any, Any, bool]:
        step.thought = parsed.thought
        if parsed.thought:
            yield ev.Thought(index=step.index, text=parsed.thought)
        step.final_answer = run.traj.final_answer = parsed.answer
        yield ev.FinalAnswer(index=step.index, text=parsed.answer, forced=forced)
        run.status = run.status if forced else "finished"
        return True

    def _act(self, run: _ReactRun, step: Step, parsed: ParsedAction, forced: bool) -> Generator[Any, Any, bool]:
        step.thought, step.action, step.action_input = parsed.thought, parsed.action, parsed.action_input
        if parsed.thought:
            yield ev.Thought(index=step.index, text=parsed.thought)
        if forced:  # asked for an answer, got an action: no answer this run
            return True
        tool = run.tools[parsed.action]
        args, result = None, None
        try:  # validated first, so "2+2" and {"expression": "2+2"} count as the same call
            args = tool.validate(parsed.action_input)
            step.action_input = args.model_dump(mode="json")
        except Exception as exc:  # noqa: BLE001 - ToolArgumentError and anything a custom validate raises
            result = exc
        repeats = run.repeats.count(parsed.action, step.action_input)
        yield ev.Action(index=step.index, tool=parsed.action, input=step.action_input)
        looping = repeats >= self.loop_limit
        if looping:
            # Not run again; the forced answer (if enabled) comes next, status stays "loop".
            run.status, run.ending = "loop", True
            step.observation = LOOP_MESSAGE
            yield ev.Observation(index=step.index, text=step.observation, is_error=True)
        else:
            tool_started = time.perf_counter()
            if args is not None:
                result = yield ToolCall(tool, args)
            run.traj.usage.tool_seconds += time.perf_counter() - tool_started
            if not isinstance(result, BaseException):
                run.results.append(result)
            yield from observe(step, result, fix="Fix the Action Input.", repeated=repeats >= 2)
        clean = render_step(parsed.thought, parsed.action, step.action_input)
        run.transcript.feed_back(clean, step.observation, error=looping or step.error is not None)
        return False
