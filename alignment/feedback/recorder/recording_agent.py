"""`Recorder.wrap(agent)`: an agent whose every finished run is recorded, whichever way it runs."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from rankact.agent.events import Done
from rankact.agent.trajectory import Trajectory


class Records(Protocol):
    """What the wrapper needs of a `Recorder` (named so, not imported: the recorder imports this)."""

    def record(self, trajectory: Trajectory, *, question_id: str | None = None,
               gold: list[str] | None = None) -> bool: ...


class RecordingAgent:
    """An agent whose `run`, `arun`, `stream` and `astream` record each finished trajectory;
    they take `question_id=` and `gold=` for the store besides the agent's own arguments.
    Everything else is the wrapped agent's."""

    def __init__(self, agent: Any, recorder: Records) -> None:
        self.agent, self.recorder = agent, recorder

    def run(self, question: str, *, question_id: str | None = None, gold: list[str] | None = None,
            **sampling: Any) -> Trajectory:
        trajectory = self.agent.run(question, **sampling)
        self.recorder.record(trajectory, question_id=question_id, gold=gold)
        return trajectory

    async def arun(self, question: str, *, question_id: str | None = None, gold: list[str] | None = None,
                   **sampling: Any) -> Trajectory:
        trajectory = await self.agent.arun(question, **sampling)
        self.recorder.record(trajectory, question_id=question_id, gold=gold)
        return trajectory

    def stream(self, question: str, *, question_id: str | None = None, gold: list[str] | None = None,
               **sampling: Any) -> Iterator[Any]:
        for event in self.agent.stream(question, **sampling):
            if isinstance(event, Done):
                self.recorder.record(event.trajectory, question_id=question_id, gold=gold)
            yield event

    async def astream(self, question: str, *, question_id: str | None = None, gold: list[str] | None = None,
                      **sampling: Any) -> AsyncIterator[Any]:
        async for event in self.agent.astream(question, **sampling):
            if isinstance(event, Done):
                self.recorder.record(event.trajectory, question_id=question_id, gold=gold)
            yield event

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)
