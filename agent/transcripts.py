"""How a ReAct run talks to its model: one `Transcript` per run, chosen once when it starts.

The loop (`rankact.agent.loop`) decides what a step means; a transcript decides how the step
is asked for and how its observation goes back, and records the segments a trainer needs:

- guided (`GuidedDecoder`, local models): one growing token list, the format forced token by
  token, the model choosing only the free parts;
- token-in/token-out (`TokenDecoder`, a server that continues raw ids): one growing token
  list, the model writing each whole step;
- chat (any other backend): the conversation rebuilt as messages for every step (a clean
  rendering of each parsed step and its observation); segments record the text sent.

`step` yields the step's LLM requests and returns a `StepOutcome`; it never raises for the
model's or the backend's misbehaviour, so the loop has one place to decide what follows.
"""
from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rankact.agent.errors import RankactError
from rankact.agent.guided import GuidedConfig, GuidedDecoder
from rankact.agent.llm.base import ChatMessage, Completion, GenerationConfig
from rankact.agent.parser import ParsedAction, ParsedFinal, ParseError, parse_step
from rankact.agent.prompt import FORCE_ANSWER_MESSAGE, build_messages, render_observation
from rankact.agent.requests import Chat, call_config, received
from rankact.agent.token_decoder import TokenDecoder, exact_tokens
from rankact.agent.trajectory import Segment, Trajectory


@dataclass
class StepOutcome:
    """What the model produced for one step: a parsed step, a format error, or a backend failure."""

    parsed: ParsedAction | ParsedFinal | None = None
    error: ParseError | None = None
    raw: str = ""
    failure: str | None = None  # the backend failed, not the model


class Transcript(Protocol):
    def step(self, index: int, forced: bool) -> Generator[Any, Any, StepOutcome]:
        """Ask the model for step `index` (`forced`: the answer now), counting its usage."""

    def feed_back(self, step_text: str, observation: str, *, error: bool) -> None:
        """Hand the model the observation of the step whose clean rendering is `step_text`."""

    def exact_token_ids(self) -> bool:
        """Whether the segments' token ids are exactly the ids the model saw and produced."""


def open_transcript(llm: Any, tools: Sequence[Any], traj: Trajectory, *, system: str, question: str,
                    sampling: GenerationConfig, generation: GenerationConfig, guided: bool,
                    guided_config: GuidedConfig) -> Transcript:
    """The transcript mode for this backend, fixed for the whole run."""
    if guided:
        return DecoderTranscript(GuidedDecoder(llm, tools, sampling=sampling, config=guided_config), traj,
                                 system, question)
    if exact_tokens(llm):
        return DecoderTranscript(TokenDecoder(llm, sampling=sampling, generation=generation, tools=tools), traj,
                                 system, question)
    return ChatTranscript(llm, tools, traj, system, question, sampling)


class DecoderTranscript:
    """Guided and token-in/token-out runs: a decoder owns the one token list of the run."""

    def __init__(self, decoder: GuidedDecoder | TokenDecoder, traj: Trajectory, system: str, question: str) -> None:
        self.decoder = decoder
        self.usage = traj.usage
        decoder.start(build_messages(system, question, []))
        traj.segments = decoder.segments  # the decoder appends to the trajectory's list

    def step(self, index: int, forced: bool) -> Generator[Any, Any, StepOutcome]:
        decoder = self.decoder
        try:
            parsed = yield from decoder.step_requests(forced_answer=forced)
            outcome = StepOutcome(parsed=parsed, raw=decoder.step_text)
        except ParseError as exc:  # a ParseError is a RankactError too: caught first
            outcome = StepOutcome(error=exc, raw=decoder.step_text)
        except RankactError as exc:
            outcome = StepOutcome(failure=str(exc), raw=decoder.step_text)
        self.usage.prompt_tokens, self.usage.completion_tokens = decoder.prompt_tokens, decoder.completion_tokens
        self.usage.llm_calls = decoder.calls
        return outcome

    def feed_back(self, step_text: str, observation: str, *, error: bool) -> None:
        self.decoder.observe(observation)  # the decoder renders the observation itself
        if error:
            self.decoder.note_error()

    def exact_token_ids(self) -> bool:
        return True


class ChatTranscript:
    """Unguided runs on a chat backend: messages rebuilt for every step, one `Chat` per step."""

    def __init__(self, llm: Any, tools: Sequence[Any], traj: Trajectory, system: str, question: str,
                 sampling: GenerationConfig) -> None:
        self.llm = llm
        self.names = [t.name for t in tools]
        self.traj = traj
        self.system, self.question, self.sampling = system, question, sampling
        self.turns: list[tuple[str, str]] = []  # (clean step, rendered observation) pairs

    def step(self, index: int, forced: bool) -> Generator[Any, Any, StepOutcome]:
        messages = build_messages(self.system, self.question, self.turns)
        if forced:  # appended to the last user message: some servers reject two in a row
            last = messages[-1]
            messages[-1] = last.model_copy(update={"content": last.content + "\n\n" + FORCE_ANSWER_MESSAGE})
        if index == 0:
            self._record_prompt(messages)
        elif forced:
            self._add_segment("prompt", "\n" + FORCE_ANSWER_MESSAGE + "\n")
        usage = self.traj.usage
        usage.llm_calls += 1
        try:
            completion: Completion = received((yield Chat(messages, call_config(self.sampling, index))))
        except RankactError as exc:
            return StepOutcome(failure=str(exc))
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        self.traj.segments.append(Segment(role="generated", text=completion.text, token_ids=completion.token_ids))
        try:
            return StepOutcome(parsed=parse_step(completion.text, self.names), raw=completion.text)
        except ParseError as exc:
            return StepOutcome(error=exc, raw=completion.text)

    def feed_back(self, step_text: str, observation: str, *, error: bool) -> None:
        rendered = render_observation(observation)
        self.turns.append((step_text, rendered))
        self._add_segment("observation", "\n" + rendered + "\n")

    def exact_token_ids(self) -> bool:
        # Re-rendered messages are re-tokenized by the server: exact only before the first observation.
        return len(self.traj.steps) <= 1 and all(s.token_ids is not None for s in self.traj.segments)

    def _add_segment(self, role: str, text: str) -> None:
        encode = getattr(self.llm, "encode", None)
        self.traj.segments.append(Segment(role=role, text=text, token_ids=encode(text) if callable(encode) else None))

    def _record_prompt(self, messages: list[ChatMessage]) -> None:
        render = getattr(self.llm, "render_prompt", None)
        text = render(messages) if callable(render) else "".join(f"<{m.role}>\n{m.content}\n" for m in messages)
        self._add_segment("prompt", text)
