"""A trajectory as an annotator ranks it: what the run said and did, nothing that tells which
model or setup produced it. The model name, status, timings, usage, sampling settings, raw
model text and token ids could each unblind a ranking, so `/api/next` leaves them out."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from rankact.agent.trajectory import Citation, StepError, Trajectory


class StepToRank(BaseModel):
    index: int
    thought: str | None = None
    action: str | None = None
    action_input: dict[str, Any] | str | None = None
    observation: str | None = None
    error: StepError | None = None
    final_answer: str | None = None


class RunToRank(BaseModel):
    id: str
    final_answer: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    steps: list[StepToRank] = Field(default_factory=list)


def blinded(trajectory: Trajectory) -> RunToRank:
    return RunToRank(
        id=trajectory.id, final_answer=trajectory.final_answer, citations=trajectory.citations,
        steps=[StepToRank(index=s.index, thought=s.thought, action=s.action, action_input=s.action_input,
                          observation=s.observation, error=s.error, final_answer=s.final_answer)
               for s in trajectory.steps],
    )
