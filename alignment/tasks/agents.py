"""The agent for a task: `rankact.agent.build.build_agent` with the tools the task names in
`metadata["tools"]` (every available tool when it names none). `collect`, `eval`, the demo,
PPO rollouts and the benches all get their agents here, so a trajectory is collected with
the tools it is later measured with."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rankact.agent.build import DEFAULT_MAX_STEPS, build_agent
from rankact.alignment.tasks.task import Task


def task_tools(task: Task) -> tuple[str, ...] | None:
    names = task.metadata.get("tools")
    return tuple(names) if names else None


class TaskAgents:
    """`agents(task)` -> the agent for that task; one agent per tool set, built on first use.
    Options are `build_agent`'s (retriever, max_steps, guided, generation, ...)."""

    def __init__(self, llm: Any, *, retriever: Any = None, max_steps: int = DEFAULT_MAX_STEPS,
                 **options: Any) -> None:
        self.llm = llm
        self.options = {"retriever": retriever, "max_steps": max_steps, **options}
        self._agents: dict[tuple[str, ...] | None, Any] = {}

    def __call__(self, task: Task) -> Any:
        key = task_tools(task)
        if key not in self._agents:
            self._agents[key] = build_agent(self.llm, tools=list(key) if key else None, **self.options)
        return self._agents[key]


def per_task(agents: Callable[[Task], Any] | Any) -> Callable[[Task], Any]:
    """Accept one agent for every task (anything with `.run`) or a task -> agent callable."""
    if hasattr(agents, "run"):
        return lambda _task: agents
    return agents


def tool_groups(tasks: Sequence[Task]) -> list[tuple[tuple[str, ...] | None, list[Task]]]:
    """Tasks grouped by the tool set they ask for (None = all tools), in order of first appearance."""
    groups: dict[tuple[str, ...] | None, list[Task]] = {}
    for task in tasks:
        groups.setdefault(task_tools(task), []).append(task)
    return list(groups.items())
