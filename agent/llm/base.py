"""The LLM interface every backend implements, small enough to read in a minute.

A backend turns chat messages into a `Completion`. Local backends also expose the
token-level operations guided decoding needs (`LocalLLM`): continue from raw token
ids, and score candidate continuations by log-probability.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "error"]


class ChatMessage(BaseModel):
    role: Role
    content: str
    # Native tool calling (OpenAI wire format): an assistant turn's calls, as
    # [{"id", "type": "function", "function": {"name", "arguments"}}], and a tool turn's call id.
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None

    def wire(self) -> dict:
        """The message as chat APIs and chat templates take it (no empty optional fields)."""
        return self.model_dump(exclude_none=True)


class NativeToolCall(BaseModel):
    """One tool call a served model asked for; `arguments` is the JSON text it wrote, unvalidated."""

    id: str
    name: str
    arguments: str


class GenerationConfig(BaseModel):
    """Sampling settings. temperature 0 means greedy decoding."""

    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


class Completion(BaseModel):
    text: str
    # Exactly the tokens that produced `text` (local backends; None over HTTP).
    token_ids: list[int] | None = None
    finish_reason: FinishReason
    # The stop string that ended generation, if any (not part of `text`).
    stop_sequence: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    # Native tool calling: the calls the model asked for (None: a plain text reply).
    tool_calls: list[NativeToolCall] | None = None
    # Log-probability of each of `token_ids` under the server's sampler (token-in/token-out).
    logprobs: list[float] | None = None


class ModelInfo(BaseModel):
    backend: str
    name: str
    revision: str | None = None


def as_messages(prompt: str | Sequence[ChatMessage] | Sequence[dict]) -> list[ChatMessage]:
    """Accept a bare user prompt, ChatMessages or plain dicts."""
    if isinstance(prompt, str):
        return [ChatMessage(role="user", content=prompt)]
    return [m if isinstance(m, ChatMessage) else ChatMessage.model_validate(m) for m in prompt]


@runtime_checkable
class LLM(Protocol):
    info: ModelInfo

    def generate(self, messages: Sequence[ChatMessage], config: GenerationConfig) -> Completion: ...

    def sample(self, messages: Sequence[ChatMessage], config: GenerationConfig, n: int) -> list[Completion]:
        """n completions of the same prompt (batched where the backend allows).
        With a seed, completion i uses seed + i, so results are reproducible."""
        ...

    def stream(self, messages: Sequence[ChatMessage], config: GenerationConfig) -> Iterator[str]:
        """Yield text pieces as they are produced; the pieces join to `generate`'s text."""
        ...


@runtime_checkable
class LocalLLM(LLM, Protocol):
    """Token-level access for guided decoding and training (transformers backends)."""

    tokenizer: object  # a transformers PreTrainedTokenizer

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The chat template applied, with the generation prompt, as text."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of text, no special tokens added."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens kept (`encode`'s inverse)."""
        ...

    def continue_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Completion:
        """Continue raw token ids (no template applied). Stop strings are honoured
        exactly: text ends before the stop string and token_ids decode to text."""
        ...

    def score_continuations(self, prompt_ids: Sequence[int], options: Sequence[Sequence[int]]) -> list[float]:
        """Sum of log-probabilities of each option's tokens following prompt_ids."""
        ...

    # Batched forms, for lockstep rollouts (many trajectories advanced together). Row i of the
    # result is what the single-row call would return for row i: with greedy decoding exactly,
    # with sampling the same for the same (seed, row) whatever else is in the batch.
    # `batched_primitives` gives loop-over-rows fallbacks for backends without real batching.

    def continue_batch(self, prompts: Sequence[Sequence[int]], configs: Sequence[GenerationConfig]) -> list[Completion]:
        """`continue_ids` for every row (each its own prompt, stop strings, seed, length)."""
        ...

    def score_batch(self, prompts: Sequence[Sequence[int]],
                    options: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
        """`score_continuations` for every row."""
        ...


class batched_primitives:
    """Mixin: `continue_batch` / `score_batch` as loops over the single-row calls."""

    def continue_batch(self, prompts, configs):
        return [self.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]

    def score_batch(self, prompts, options):
        return [self.score_continuations(p, o) for p, o in zip(prompts, options, strict=True)]
