"""Collection: run the agent K times per task with seeded sampling and store every trajectory.

Sample k of a task uses seed `base_seed + k` and records `metadata.sample_index = k`, so a
rerun finds which samples a question already has and runs only the missing ones: a task
with K trajectories is skipped, a partial one is completed. Each trajectory is committed as
soon as it exists, so an interrupted run loses at most the sample in flight.

Outages are not data. A run the backend ended (server down, HTTP 5xx, a timeout: the
trajectory's `backend_failure`, or a `BackendError` raised) says nothing about the model,
so it is never stored: it is run again after a growing wait, up to `retries` times, and if
it still fails it stays missing for the next run of the same command to retry. A run the
model itself ended badly (parse errors, tool errors, max_steps, a loop) IS data and is
stored with its status.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from rankact.agent.batch import DEFAULT_BATCH_SIZE, Job, run_batch
from rankact.agent.errors import BackendError
from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import IncompleteCollection, NotFoundError
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.tasks import Task
from rankact.alignment.tasks.agents import per_task

log = logging.getLogger("rankact.collect")

DEFAULT_RETRIES = 2
DEFAULT_RETRY_WAIT = 5.0  # seconds before the first retry; doubled before each next one


class RunsQuestions(Protocol):
    def run(self, question: str, *, temperature: float | None = None, seed: int | None = None) -> Trajectory: ...


class CollectReport(BaseModel):
    tasks: int = 0
    skipped: int = Field(0, description="tasks that already had every sample")
    closed: int = Field(0, description="tasks missing samples whose question already has rankings: it takes no "
                                       "new trajectories (collect into a new question version or a new store)")
    completed: int = Field(0, description="tasks that got new samples")
    attempted: int = Field(0, description="samples this run set out to collect")
    added: int = Field(0, description="trajectories stored by this run")
    failed: int = Field(0, description="samples that still failed after the retries (not stored)")
    retried: int = Field(0, description="runs repeated after an outage")
    failure: str | None = Field(None, description="why the last failed sample failed")
    by_status: dict[str, int] = Field(default_factory=dict)

    def raise_if_incomplete(self) -> None:
        """One line a person can act on when samples are missing: how many, why, what to do."""
        if self.failed:
            raise IncompleteCollection(f"{self.failed} of {self.attempted} samples failed ({self.failure}); "
                                       "rerun the same command to retry them")


def outage(trajectory: Trajectory | None, error: BaseException | None) -> str | None:
    """Why a run is an outage (the backend failed, not the model), or None if it is data."""
    if isinstance(error, BackendError):
        return f"backend failed: {error}"
    if trajectory is not None and trajectory.backend_failure is not None:
        return f"backend failed: {trajectory.backend_failure}"
    return None


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
    retries: int = DEFAULT_RETRIES,
    retry_wait: float = DEFAULT_RETRY_WAIT,
    on_retry: Callable[[int, float, str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CollectReport:
    """Run each task's agent (`agents(task)`, e.g. `TaskAgents`, or one agent for all) until
    every task has `samples` trajectories in `store`; `batch_size` runs advance in lockstep
    (`rankact.agent.batch`) and each is stored as soon as it finishes. Runs that hit an outage are run
    again after `retry_wait * 2**i` seconds, at most `retries` times (`on_retry(count, wait,
    reason)` before each wait); `on_sample` is called once per sample, with None for one that failed."""
    if samples < 1:
        raise ValueError("samples must be at least 1")
    if retries < 0 or retry_wait < 0:
        raise ValueError("retries and retry_wait must not be negative")
    agent_for = per_task(agents)
    report = CollectReport(tasks=len(tasks))
    pending: list[tuple[Task, int]] = []
    for task in tasks:
        missing = _missing(store, task.id, samples)
        if not missing:
            report.skipped += 1
            continue
        if _ranked(store, task.id):  # found before running the agent, not at the store's refusal
            report.closed += 1
            continue
        done = len(missing) < samples
        if not done:  # the question exists (with its gold answers) even if every sample fails
            store.add_question(task.question, task.id, gold=task.answers, metadata=task.metadata)
        pending.extend((task, k) for k in missing)
    report.attempted = len(pending)
    stored_tasks: set[str] = set()

    def run_round(planned: list[tuple[Task, int]], last_attempt: bool) -> list[tuple[Task, int]]:
        """Run `planned`; store what is data, return the outages to run again."""
        again: list[tuple[Task, int]] = []

        def finished(i: int, trajectory: Trajectory | None, error: BaseException | None) -> None:
            task, k = planned[i]
            reason = outage(trajectory, error)
            if reason is None and error is not None:  # a bug in one run must not end a long collection
                reason = f"{type(error).__name__}: {error}"
                log.debug("task %s sample %d raised", task.id, k, exc_info=error)
            elif reason is not None and not last_attempt:
                report.failure = reason
                again.append((task, k))  # run again after the wait; reported then
                return
            if reason is not None:
                log.info("task %s sample %d failed: %s", task.id, k, reason)
                report.failed += 1
                report.failure = reason
            else:
                trajectory.metadata = {**trajectory.metadata, "task_id": task.id, "sample_index": k,
                                       "seed": sample_seed(seed, k), "temperature": temperature}
                store.add(trajectory, question_id=task.id, gold=task.answers)
                stored_tasks.add(task.id)
                report.added += 1
                report.by_status[trajectory.status] = report.by_status.get(trajectory.status, 0) + 1
            if on_sample:
                on_sample(task, k, trajectory if reason is None else None)

        jobs = [Job(agent_for(task), task.question, temperature=temperature, seed=sample_seed(seed, k))
                for task, k in planned]
        run_batch(jobs, batch_size=batch_size, on_done=finished)
        return again

    for attempt in range(retries + 1):
        if attempt:
            wait = retry_wait * 2 ** (attempt - 1)
            report.retried += len(pending)
            if on_retry:
                on_retry(len(pending), wait, report.failure or "")
            sleep(wait)
        pending = run_round(pending, last_attempt=attempt == retries)
        if not pending:
            break
    report.completed = len(stored_tasks)
    return report


def _missing(store: TrajectoryStore, task_id: str, samples: int) -> list[int]:
    done = store.sample_indices(task_id)
    return [k for k in range(samples) if k not in done]


def _ranked(store: TrajectoryStore, task_id: str) -> bool:
    try:
        return store.question(task_id).rankings > 0
    except NotFoundError:
        return False


def samples_to_run(tasks: Sequence[Task], store: TrajectoryStore, samples: int) -> int:
    """How many agent runs `collect` would make (for a progress bar's total)."""
    return sum(len(missing) for t in tasks if (missing := _missing(store, t.id, samples)) and not _ranked(store, t.id))
