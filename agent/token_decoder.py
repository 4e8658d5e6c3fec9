"""Unguided ReAct on one growing token sequence (token-in/token-out from a server).

A backend that declares `token_in_token_out` (`rankact.agent.llm.token_io.ServedTokensLLM`) renders
the chat template itself and continues raw token ids. `TokenDecoder` keeps the run as ONE
list of ids, like `GuidedDecoder`, but lets the model write each whole step:

    prompt (template, generation prompt) | generated step | observation turn | generated ...

The observation turn is what the chat template puts between the assistant's reply and the
next generation prompt, with the observation as a user message, e.g. for ChatML
`<|im_end|>\\n<|im_start|>user\\nObservation: ...<|im_end|>\\n<|im_start|>assistant\\n`. So the
end-of-turn token is never lost (verl #6501): if the model sampled it, it stays in the
generated ids (and is trained on) and is not repeated; if generation stopped at a stop
string, the template's end-of-turn opens the observation turn. Every request sends the whole
list, so the ids a trainer concatenates from the segments are exactly the ids the server was
given and produced.
"""
from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from rankact.agent.llm import ChatMessage, Completion, GenerationConfig
from rankact.agent.parser import ParsedAction, ParsedFinal, parse_step
from rankact.agent.prompt import FORCE_ANSWER_MESSAGE, render_observation
from rankact.agent.requests import Continue, call_config, received
from rankact.agent.trajectory import Segment

_MARK = "RANKACT-END-OF-REPLY-MARK"


def exact_tokens(llm: Any) -> bool:
    """Backends whose unguided runs are one token sequence (token-in/token-out)."""
    return bool(getattr(llm, "token_in_token_out", False))


class TokenDecoder:
    """The interface of `GuidedDecoder` the loop uses (start, step_requests, observe, segments)."""

    def __init__(self, llm: Any, *, sampling: GenerationConfig, generation: GenerationConfig,
                 tools: Sequence[Any] = ()) -> None:
        self.llm = llm
        self.sampling = sampling
        self.generation = generation
        self.names = [t.name for t in tools]
        self.ids: list[int] = []
        self.segments: list[Segment] = []
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.step_text = ""
        self._messages: list[ChatMessage] = []
        self._pending: str | None = None  # observation waiting for the next step
        self._special = set(getattr(llm.tokenizer, "all_special_ids", []) or [])

    def _append(self, role: str, text: str, ids: list[int], logprobs: list[float] | None = None) -> None:
        self.ids.extend(ids)
        self.segments.append(Segment(role=role, text=text, token_ids=list(ids), logprobs=logprobs))

    def start(self, messages: Sequence[ChatMessage]) -> None:
        self._messages = list(messages)
        text = self.llm.render_prompt(messages)
        self._append("prompt", text, self.llm.encode(text))

    def observe(self, text: str) -> None:
        """The tool result; it is written as the next user turn when the next step starts."""
        self._pending = render_observation(text)

    def note_error(self) -> None:
        """(GuidedDecoder's answer bias has no counterpart here.)"""

    def _turn_after_reply(self, user: str) -> str:
        """The template's text after an assistant reply: end of turn, the user turn, the next
        generation prompt (found by rendering a reply made of a marker)."""
        messages = [*self._messages[:2], ChatMessage(role="assistant", content=_MARK),
                    ChatMessage(role="user", content=user)]
        text = self.llm.render_prompt(messages)
        return text[text.index(_MARK) + len(_MARK):]

    def _observation_turn(self, user: str) -> None:
        text = self._turn_after_reply(user)
        ids = self.llm.encode(text)
        last = self.ids[-1] if self.ids else None
        # The model already sampled the end-of-turn token: it is part of the reply, not repeated.
        if last in self._special and ids and ids[0] == last:
            text, ids = text[len(self.llm.decode([last])):], ids[1:]
        self._append("observation", text, ids)

    def step_requests(self, *, forced_answer: bool = False) -> Generator[Continue, Any, ParsedAction | ParsedFinal]:
        self.step_text = ""
        if self._pending is not None:
            user = self._pending + ("\n\n" + FORCE_ANSWER_MESSAGE if forced_answer else "")
            self._pending = None
            self._observation_turn(user)
        config = call_config(self.sampling, self.calls, max_new_tokens=self.generation.max_new_tokens,
                             stop=list(self.generation.stop))
        self.calls += 1
        completion: Completion = received((yield Continue(list(self.ids), config)))
        ids = list(completion.token_ids or [])
        self.prompt_tokens += completion.prompt_tokens or len(self.ids)
        self.completion_tokens += completion.completion_tokens or len(ids)
        self._append("generated", completion.text, ids, completion.logprobs)
        self.step_text = completion.text
        return parse_step(completion.text, self.names)
