"""Collection: run the agent K times per task with seeded sampling and store every trajectory.

Sample k of a task uses seed `base_seed + k` and records `metadata.sample_index = k`, so a
rerun finds which samples a question already has and runs only the missing ones: a task
with K trajectories is skipped, a partial one is completed. Each trajectory is committed as
soon as it exists, so an interrupted run loses at most the sample in flight.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from agent.batch import DEFAULT_BATCH_SIZE, Job, run_batch
from agent.trajectory import Trajectory
from alignment.feedback.store import TrajectoryStore
from alignment.tasks import Task
from alignment.tasks.agents import per_task

log = logging.getLogger("rankact.collect")


class RunsQuestions(Protocol):
    def run(self, question: str, *, temperature: float | None = None, seed: int | None = None) -> Trajectory: ...


class CollectReport(BaseModel):
    tasks: int = 0
    skipped: int = Field(0, description="tasks that already had every sample")
    completed: int = Field(0, description="tasks that got new samples")
    added: int = Field(0, description="trajectories stored by this run")
    failed: int = Field(0, description="samples whose run raised (logged, not stored)")
    by_status: dict[str, int] = Field(default_factory=dict)


def sample_seed(base_seed: int, sample_index: int) -> int:
    return base_seed + sample_index


def collect(
    tasks: Sequence[Task],
    agents: Callable[[Task], RunsQuestions] | RunsQuestions,
    store: TrajectoryStore,
    *,
    samples: int,
    temperature: float = 0.8,
    seed: int = 0,
    on_sample: Callable[[Task, int, Trajectory | None], None] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> CollectReport:
    """Run each task's agent (`agents(task)`, e.g. `TaskAgents`, or one agent for all) until
    every task has `samples` trajectories in `store`; `batch_size` runs advance in lockstep
    (`agent.batch`) and each is stored as soon as it finishes."""
    if samples < 1:
        raise ValueError("samples must be at least 1")
    agent_for = per_task(agents)
    report = CollectReport(tasks=len(tasks))
    jobs: list[Job] = []
    planned: list[tuple[Task, int]] = []
    for task in tasks:
        done = store.sample_indices(task.id)
        missing = [k for k in range(samples) if k not in done]
        if not missing:
            report.skipped += 1
            continue
        if not done:  # the question exists (with its gold answers) even if every sample fails
            store.add_question(task.question, task.id, gold=task.answers, metadata=task.metadata)
        for k in missing:
            jobs.append(Job(agent_for(task), task.question, temperature=temperature, seed=sample_seed(seed, k)))
            planned.append((task, k))
    stored_tasks: set[str] = set()

    def finished(i: int, trajectory: Trajectory | None, error: BaseException | None) -> None:
        task, k = planned[i]
        if error is not None:  # one bad sample must not end a long collection run
            log.error("task %s sample %d failed: %s: %s", task.id, k, type(error).__name__, error)
            report.failed += 1
        else:
            trajectory.metadata = {**trajectory.metadata, "task_id": task.id, "sample_index": k,
                                   "seed": sample_seed(seed, k), "temperature": temperature}
            store.add(trajectory, question_id=task.id, gold=task.answers)
            stored_tasks.add(task.id)
            report.added += 1
            report.by_status[trajectory.status] = report.by_status.get(trajectory.status, 0) + 1
        if on_sample:
            on_sample(task, k, trajectory if error is None else None)

    run_batch(jobs, batch_size=batch_size, on_done=finished)
    report.completed = len(stored_tasks)
    return report


def samples_to_run(tasks: Sequence[Task], store: TrajectoryStore, samples: int) -> int:
    """How many agent runs `collect` would make (for a progress bar's total)."""
    return sum(len([k for k in range(samples) if k not in store.sample_indices(t.id)]) for t in tasks)
