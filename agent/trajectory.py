"""`Trajectory`: the contract between the agent, the store, the ranking page and the trainers.

It lets a trainer rebuild exactly what the model saw and produced: `segments` is the whole
transcript in order; only `generated` pieces that were not `forced` are the model's own
choices and are trained on. Prompt and observation pieces are context, masked in training.

With guided decoding (the default for local models) and with token-in/token-out from a
server (`rankact.agent.llm.token_io`) the segments are one token sequence, exactly what the model saw
and sampled (`exact_token_ids` True). Unguided chat runs re-render the chat for each call (a
clean scratchpad), and served chat replies carry no ids, so their segments approximate what
the model saw (`exact_token_ids` False); the policy trainers refuse those unless told to
re-tokenize. Trajectories stored before the field existed have None (`has_exact_ids` judges).
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["finished", "max_steps", "loop", "error"]
SegmentRole = Literal["prompt", "generated", "observation"]
# No tokenizer comes near this many tokens: the bound on ids when the vocabulary is not known.
MAX_TOKEN_IDS = 2**24
# "backend": the LLM call itself failed (server down, HTTP error); not the model's doing, so
# collection does not store such a run as data (alignment.feedback.collection.collect).
ErrorKind = Literal["parse", "validation", "tool", "timeout", "unknown_tool", "backend"]


class Segment(BaseModel):
    role: SegmentRole
    text: str
    # Token ids as the model saw / sampled them (local backends). Training uses these
    # directly, so it never re-tokenizes across a segment boundary differently.
    token_ids: list[int] | None = None
    # True for text the guided decoder wrote itself (keywords such as "Thought:"), not
    # chosen by the model; trainers treat it like prompt text.
    forced: bool = False
    # Log-probability of each of `token_ids` as the server sampled it (token-in/token-out).
    logprobs: list[float] | None = None


class StepError(BaseModel):
    kind: ErrorKind
    message: str


class Citation(BaseModel):
    chunk_id: str
    source: str | None = None
    title: str | None = None


class Step(BaseModel):
    index: int
    thought: str | None = None
    action: str | None = None
    action_input: dict[str, Any] | str | None = None
    observation: str | None = None
    error: StepError | None = None
    raw: str = ""
    # True for the extra "answer now" call made after max_steps.
    forced_answer: bool = False
    final_answer: str | None = None
    seconds: float = 0.0
    # Native tool calling: the id the server gave this call (its tool message answers it).
    call_id: str | None = None


class ModelRef(BaseModel):
    backend: str
    name: str
    revision: str | None = None


class ToolRef(BaseModel):
    name: str
    schema_hash: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    seconds: float = 0.0
    llm_seconds: float = 0.0
    tool_seconds: float = 0.0


def new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class Trajectory(BaseModel):
    id: str = Field(default_factory=new_id)
    question: str
    created_at: datetime = Field(default_factory=_now)
    model: ModelRef
    prompt_version: str
    tools: list[ToolRef] = Field(default_factory=list)
    status: Status = "error"
    final_answer: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    sampling: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # True: `segments` hold the exact ids the model saw and produced; False: text only or an
    # approximation; None: recorded before this field existed (see `has_exact_ids`).
    exact_token_ids: bool | None = None

    @property
    def has_exact_ids(self) -> bool:
        if self.exact_token_ids is not None:
            return self.exact_token_ids
        # Older records: every segment has ids, and one chat call or one token sequence (guided).
        recorded = bool(self.segments) and all(s.token_ids is not None for s in self.segments)
        return recorded and (self.sampling.get("guided") is not False or len(self.steps) <= 1)

    def token_ids_outside(self, vocab_size: int = MAX_TOKEN_IDS) -> str | None:
        """Where the first token id outside [0, vocab_size) is, in words, or None when every id
        fits: the check the store (with no vocabulary, MAX_TOKEN_IDS) and a trainer (its
        tokenizer's) make before they trust the ids."""
        for index, segment in enumerate(self.segments):
            ids = segment.token_ids or ()
            bad = next((t for t in ids if not 0 <= t < vocab_size), None)
            if bad is not None:
                return f"segments[{index}].token_ids holds {bad}, outside the vocabulary [0, {vocab_size})"
        return None

    @property
    def parse_errors(self) -> int:
        return sum(1 for s in self.steps if s.error is not None and s.error.kind == "parse")

    @property
    def backend_failure(self) -> str | None:
        """What the backend said if a call to it ended this run (an outage, not the model's output)."""
        return next((s.error.message for s in self.steps if s.error is not None and s.error.kind == "backend"), None)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.steps if s.error is not None)

    @property
    def tool_calls(self) -> int:
        return sum(1 for s in self.steps if s.action is not None)

    def transcript(self) -> str:
        """The full text the model saw and produced, in order."""
        return "".join(s.text for s in self.segments)

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    @classmethod
    def from_json(cls, data: str | bytes) -> Trajectory:
        return cls.model_validate_json(data)
