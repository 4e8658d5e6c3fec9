"""Guided decoding: the loop writes the ReAct keywords, the model fills the slots.

A 135M model given a ReAct prompt ignores the format; it still has useful preferences
once the format is held for it. `GuidedDecoder` works on ONE growing list of token ids
(prompt, then every forced, generated and observation piece appended in order), so the
tokenization a trainer sees is exactly what the model was conditioned on:

    Thought:<generated to end of line>
    <the model's choice, by log-probability, of "\\nAction:" or "\\nFinal Answer:">
    Action: <the model's choice among the valid tool names>
    Action Input: {"arg": "<generated>", ...} with the JSON punctuation forced
                  (or, with string_input="plain", a single-string tool's line as text)
    Observation: <tool result, appended by the loop>

Choices are scored with `score_continuations` (summed log-probs of each option), so they
are always valid and are the model's own preference; with temperature > 0 the option is
sampled from the softmax of those scores. Chosen options are recorded as generated (not
forced) segments; keywords and JSON punctuation the decoder wrote are `forced=True`.

`answer_bias` (nats, default 1.0) is added to the "Final Answer" option right after a
successful observation: small models otherwise tend to call the same tool again instead of
reading its result. It is the only thumb on the scale, and it can be set to 0.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from rankact.agent.llm import ChatMessage, Completion, GenerationConfig
from rankact.agent.parser import ParsedAction, ParsedFinal, ParseError, parse_action_input
from rankact.agent.requests import Continue, Score, answer_request, call_config, received
from rankact.agent.trajectory import Segment

ACTION = "\nAction:"
FINAL = "\nFinal Answer:"
_SIMPLE_TYPES = {"string", "integer", "number", "boolean"}
# A slot ends where a keyword would start, so the step always re-parses (the parser is
# case-insensitive, hence both spellings).
_KEYWORDS = ["Action:", "Final Answer:", "Observation:", "action:", "final answer:", "observation:"]
_THOUGHT_STOPS = ["\n", *_KEYWORDS]
_ANSWER_STOPS = ["\n", *_KEYWORDS]


class GuidedConfig(BaseModel):
    thought_max_tokens: int = 48
    input_max_tokens: int = 48
    answer_max_tokens: int = 48
    answer_bias: float = 1.0
    # Single-string tools: "json" forces {"arg": " and lets the model write the value (the
    # default: on DEV the embedded model then writes usable search queries and calculator
    # inputs, where plain text gave "search" or "368 + 226 = 594"); "plain" lets it write
    # the whole line after "Action Input:".
    string_input: Literal["plain", "json"] = "json"


def supports_guidance(llm: Any) -> bool:
    """True for backends with token-level access (LocalLLM)."""
    return all(callable(getattr(llm, name, None)) for name in ("continue_ids", "score_continuations", "encode"))


def first_line_length(ids: Sequence[int], decode: Any) -> int:
    """How many of `ids` cover any leading blank lines and the first line with text, up to
    (not including) the token that carries the line break ending it."""
    for m in range(1, len(ids) + 1):
        if "\n" in decode(ids[:m]).lstrip():
            return m - 1
    return len(ids)


@dataclass
class _Arg:
    name: str
    type: str  # a JSON Schema simple type, or "enum" (the model picks one of `choices`)
    choices: tuple[Any, ...] = ()


def _schema_args(tool: Any) -> list[_Arg] | None:
    """The required arguments if each is a simple type or an enum of scalars, else None:
    free-form JSON for the whole input (nested objects, arrays, unions, `$ref`s, e.g. from
    MCP servers), which the tool then validates against its schema as for any output."""
    params = tool.json_schema().get("parameters", {})
    props = params.get("properties", {})
    required = params.get("required", list(props))
    args = []
    for name in required:
        node = props.get(name, {})
        enum = node.get("enum") if isinstance(node, dict) else None
        kind = node.get("type", "") if isinstance(node, dict) else ""
        if isinstance(enum, list) and enum and all(isinstance(v, str | int | float | bool) for v in enum):
            args.append(_Arg(name, "enum", tuple(enum)))
        elif isinstance(kind, str) and kind in _SIMPLE_TYPES:  # "type": ["string", "null"] is not simple
            args.append(_Arg(name, kind))
        else:
            return None
    return args


class GuidedDecoder:
    """Holds the token list and segments of one run; `step()` decodes one ReAct step."""

    def __init__(
        self,
        llm: Any,
        tools: Sequence[Any],
        *,
        sampling: GenerationConfig,
        config: GuidedConfig | None = None,
    ) -> None:
        self.llm = llm
        self.tools = {t.name: t for t in tools}
        self.sampling = sampling
        self.config = config or GuidedConfig()
        self.ids: list[int] = []
        self.segments: list[Segment] = []
        self.calls = 0  # LLM primitive calls, for per-call seeds
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.step_text = ""  # the raw text of the step being decoded
        self._after_observation = False

    # ---- token list bookkeeping -----------------------------------------------------
    def _append(self, role: str, text: str, ids: list[int], forced: bool = False) -> None:
        if not ids and not text:
            return
        self.ids.extend(ids)
        if role != "prompt":
            self.step_text += text if role == "generated" else ""
        last = self.segments[-1] if self.segments else None
        if last is not None and last.role == role and last.forced == forced:
            last.text += text
            last.token_ids = (last.token_ids or []) + list(ids)
        else:
            self.segments.append(Segment(role=role, text=text, token_ids=list(ids), forced=forced))

    def _force(self, text: str) -> None:
        self._append("generated", text, self.llm.encode(text), forced=True)

    def _config(self, max_new_tokens: int, stop: list[str]) -> GenerationConfig:
        config = call_config(self.sampling, self.calls, max_new_tokens=max_new_tokens, stop=stop)
        self.calls += 1
        return config

    def _generate(self, max_new_tokens: int, stop: list[str], *,
                  first_line: bool = False) -> Generator[Continue, Any, str]:
        """Generate up to a stop string. With `first_line`, record only the tokens up to the
        first line with text (what a "\n" stop after that text would have kept)."""
        completion: Completion = received((yield Continue(list(self.ids), self._config(max_new_tokens, stop))))
        ids = list(completion.token_ids or [])
        self.prompt_tokens += completion.prompt_tokens or len(self.ids)
        self.completion_tokens += completion.completion_tokens or len(ids)
        text = completion.text
        if first_line:
            ids = ids[: first_line_length(ids, self.llm.decode)]
            text = self.llm.decode(ids)
        self._append("generated", text, ids)
        return text

    def _choose(self, options: Sequence[str], bias: Sequence[float] | None = None) -> Generator[Score, Any, int]:
        """Index of the option the model prefers (sampled when temperature > 0)."""
        encoded = [self.llm.encode(o) for o in options]
        if len(options) == 1:
            self._append("generated", options[0], encoded[0], forced=True)
            return 0
        config = self._config(1, [])
        scores = list(received((yield Score(list(self.ids), encoded))))
        self.prompt_tokens += len(self.ids) * len(options)
        if bias:
            scores = [s + b for s, b in zip(scores, bias, strict=True)]
        if config.temperature > 0:
            top = max(scores)
            weights = [math.exp((s - top) / config.temperature) for s in scores]
            choice = random.Random(config.seed).choices(range(len(options)), weights=weights)[0]
        else:
            choice = max(range(len(options)), key=lambda i: scores[i])
        self._append("generated", options[choice], encoded[choice])
        return choice

    # ---- public API -----------------------------------------------------------------
    def start(self, messages: Sequence[ChatMessage]) -> None:
        text = self.llm.render_prompt(messages)
        self._append("prompt", text, self.llm.encode(text))

    def observe(self, text: str) -> None:
        """Append the tool result; the next step starts right after it."""
        piece = f"\nObservation: {text}\n"
        self._append("observation", piece, self.llm.encode(piece))
        self._after_observation = True

    def note_error(self) -> None:
        """The last observation was an error: no answer bias for the next choice."""
        self._after_observation = False

    def step(self, *, forced_answer: bool = False) -> ParsedAction | ParsedFinal:
        """Decode one step on this decoder's llm. Raises ParseError only for an empty final answer."""
        requests = self.step_requests(forced_answer=forced_answer)
        value = None
        while True:
            try:
                request = requests.send(value)
            except StopIteration as done:
                return done.value
            try:
                value = answer_request(self.llm, request)
            except Exception as exc:  # noqa: BLE001 - raised inside the step, where it belongs
                value = exc

    def step_requests(self, *, forced_answer: bool = False) -> Generator[Continue | Score, Any,
                                                                           ParsedAction | ParsedFinal]:
        """Decode one step as a generator of the primitive requests it needs (`Continue`,
        `Score`), each answered by the driver: one at a time (`step`) or batched with other
        trajectories' requests (`rankact.agent.batch`)."""
        self.step_text = ""
        if self.segments and self.segments[-1].role == "generated":
            self._force("\n")  # a previous step ended inside the assistant's text
        self._force("Thought:")
        thought = yield from self._generate(self.config.thought_max_tokens, _THOUGHT_STOPS)
        thought = thought.strip() or None

        if forced_answer or not self.tools:
            self._force(FINAL)
            is_final = True
        else:
            bias = [0.0, self.config.answer_bias if self._after_observation else 0.0]
            is_final = (yield from self._choose([ACTION, FINAL], bias)) == 1
        self._after_observation = False

        if is_final:
            text = (yield from self._generate(self.config.answer_max_tokens, _ANSWER_STOPS)).strip()
            if not text:
                # Small models like line breaks right after "Final Answer:" (one, or several:
                # forcing one and stopping at the next still ended empty); decode again
                # without the line-break stop and keep the first line that has text.
                text = (yield from self._generate(self.config.answer_max_tokens, _KEYWORDS, first_line=True)).strip()
            if not text:
                raise ParseError("the Final Answer is empty", "Write the answer right after 'Final Answer:'.")
            return ParsedFinal(thought=thought, answer=text, raw=self.step_text)

        names = list(self.tools)
        name = names[(yield from self._choose([" " + n for n in names]))]
        self._force("\nAction Input:")
        action_input = yield from self._input(self.tools[name])
        return ParsedAction(thought=thought, action=name, action_input=action_input, raw=self.step_text)

    def _input(self, tool: Any) -> Generator[Continue | Score, Any, dict[str, Any] | str]:
        limit = self.config.input_max_tokens
        plain = getattr(tool, "single_string_input", False) and self.config.string_input == "plain"
        args = None if plain else _schema_args(tool)
        if args is None:  # plain text (single-string tools) or free-form JSON
            text = yield from self._generate(limit, ["\n"])
            try:
                return parse_action_input(text)
            except ParseError:
                return text.strip()
        if not args:
            self._force(" {}")
            return {}
        values: dict[str, Any] = {}
        for i, arg in enumerate(args):
            opener = " {" if i == 0 else ", "
            key = f'{opener}"{arg.name}":'
            if arg.type == "string":
                self._force(key + ' "')
                values[arg.name] = yield from self._generate(limit, ['"', "\n"])
                self._force('"')
            elif arg.type == "enum":
                self._force(key)
                options = [" " + json.dumps(v, ensure_ascii=False) for v in arg.choices]
                values[arg.name] = arg.choices[(yield from self._choose(options))]
            elif arg.type == "boolean":
                self._force(key)
                values[arg.name] = (yield from self._choose([" true", " false"])) == 0
            else:  # integer / number: the model writes the digits
                self._force(key)
                text = (yield from self._generate(limit, [",", "}", "\n"])).strip()
                try:
                    values[arg.name] = json.loads(text)
                except ValueError:
                    values[arg.name] = text  # the tool's validation will say what is wrong
        self._force("}")
        return values
