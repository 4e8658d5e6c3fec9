"""Typed events `Agent.stream` / `Agent.astream` yield while a run is in progress.

Pydantic models with a `type` tag, so a server can send them as JSON lines or SSE as is.
Order within a step: StepStart, Thought?, then Action + Observation, or FinalAnswer, with
Error (before its Observation) when something went wrong; Done(trajectory) comes last.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from rankact.agent.trajectory import ErrorKind, Status, Trajectory


class StepStart(BaseModel):
    type: Literal["step_start"] = "step_start"
    index: int
    forced_answer: bool = False


class Thought(BaseModel):
    type: Literal["thought"] = "thought"
    index: int
    text: str


class Action(BaseModel):
    type: Literal["action"] = "action"
    index: int
    tool: str
    input: dict[str, Any] | str


class Observation(BaseModel):
    type: Literal["observation"] = "observation"
    index: int
    text: str
    is_error: bool = False


class FinalAnswer(BaseModel):
    type: Literal["final_answer"] = "final_answer"
    index: int
    text: str
    forced: bool = False


class Error(BaseModel):
    type: Literal["error"] = "error"
    index: int
    # The step error kinds, or "backend" when the LLM call itself failed (the run ends).
    kind: ErrorKind
    message: str


class Done(BaseModel):
    type: Literal["done"] = "done"
    status: Status
    trajectory: Trajectory


Event = StepStart | Thought | Action | Observation | FinalAnswer | Error | Done

__all__ = ["Action", "Done", "Error", "Event", "FinalAnswer", "Observation", "StepStart", "Thought"]
