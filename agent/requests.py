"""The requests an agent run yields, and the one rule for per-call seeds (sans-I/O).

A run's core (`rankact.agent.loop.Agent.core`) never does I/O: it yields these requests and a
driver answers them, inline (`run`, `stream`), in threads (`arun`, `astream`) or batched with
other trajectories' requests (`rankact.agent.batch`). The answer sent back is the result, or
the exception the call ended with, which `received` raises again inside the core, where the
loop decides what a failure means. The drivers, the batcher and the tracer all import the
request types from here, below the loop, so none of them imports the loop for its vocabulary.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rankact.agent.llm.base import GenerationConfig


@dataclass
class Continue:
    """Request: `llm.continue_ids(ids, config)`; answered with a `Completion`."""

    ids: list[int]
    config: GenerationConfig


@dataclass
class Score:
    """Request: `llm.score_continuations(ids, options)`; answered with a list of floats."""

    ids: list[int]
    options: list[list[int]]


@dataclass
class Chat:
    """Request (unguided runs): `llm.generate(messages, config)`; answered with a `Completion`."""

    messages: list
    config: GenerationConfig
    tools: list[dict] | None = None  # native tool calling: the tools' schemas sent with the request


LLM_REQUESTS = (Continue, Score, Chat)


@dataclass
class ToolCall:
    """Request: run `tool` on validated `args`; answered with a ToolResult or an exception."""

    tool: Any
    args: Any


class ToolCalls(ToolCall):
    """Request: the calls of one native turn, run concurrently; answered with one result per
    call (a ToolResult or the exception it ended with). Drivers treat it as a `ToolCall`."""

    def __init__(self, calls: Sequence[ToolCall]) -> None:
        super().__init__(tool=None, args=None)
        self.calls = list(calls)


def answer_request(llm: Any, request: Continue | Score | Chat) -> Any:
    """Carry out one LLM request on `llm`, one row at a time (raises what the backend raises)."""
    if isinstance(request, Chat):
        tools = {"tools": request.tools} if request.tools is not None else {}
        return llm.generate(request.messages, request.config, **tools)
    if isinstance(request, Continue):
        return llm.continue_ids(request.ids, request.config)
    return llm.score_continuations(request.ids, request.options)


def received(value: Any) -> Any:
    """A request's answer, or the exception its execution ended with, raised here."""
    if isinstance(value, BaseException):
        raise value
    return value


def call_seed(seed: int | None, index: int) -> int | None:
    """The seed of a run's `index`-th LLM call (None: unseeded). Every call gets its own seed,
    derived the same way by every transcript mode, so a seeded trajectory is the same whether
    it ran alone or in a batch, and two calls of one run never share a random stream."""
    return None if seed is None else seed * 1000 + index


def call_config(sampling: GenerationConfig, index: int, **update: Any) -> GenerationConfig:
    """`sampling` for the run's `index`-th LLM call: its own seed (`call_seed`), plus `update`."""
    return sampling.model_copy(update={**update, "seed": call_seed(sampling.seed, index)})
