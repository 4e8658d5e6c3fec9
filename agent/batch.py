"""`run_batch`: many trajectories advanced in lockstep, the K samples of a question and many
questions at once.

Each job is an agent's `core` (the one loop every driver shares). A round advances every
active job to its next request, then answers the requests together: all `Continue` requests
in one `llm.continue_batch` (one lockstep decode), all `Score` requests in one
`llm.score_batch`, tool calls concurrently in threads, and `Chat` requests (served models)
concurrently too. Finished trajectories leave the batch and queued jobs join it, so the batch
stays full. With a local model, `rankact.agent.llm.lockstep` keeps each row's KV cache between rounds
and shares prompt prefixes (system prompt, tools, the question of K samples).

Reproducibility: every request carries its own seed (`rankact.agent.requests.call_seed`: from the run's seed and the call
index, as in a sequential run), and the backend samples each row from its own generator, so a
job's trajectory does not depend on what else is in the batch; greedy runs equal sequential
ones (up to float summation order).
"""
from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rankact.agent import events as ev
from rankact.agent.loop import Agent
from rankact.agent.requests import Chat, Continue, Score, ToolCall
from rankact.agent.trajectory import Trajectory

DEFAULT_BATCH_SIZE = 16


@dataclass
class Job:
    """One trajectory to run: `rankact.agent.run(question, temperature=, seed=, top_p=)`."""

    agent: Agent
    question: str
    temperature: float | None = None
    seed: int | None = None
    top_p: float | None = None


@dataclass
class _Active:
    index: int
    core: Any
    request: Any = None
    answer: Any = None
    trajectory: Trajectory | None = None
    error: BaseException | None = None
    pending: list = field(default_factory=list)


def _advance(active: _Active) -> None:
    """Send the last answer and run the core to its next request (or to its end)."""
    value, active.answer = active.answer, None
    while True:
        try:
            item = active.core.send(value)
        except StopIteration:
            active.request = None
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not end the others
            active.error, active.request = exc, None
            return
        value = None
        if isinstance(item, ev.Done):
            active.trajectory = item.trajectory
            continue
        if isinstance(item, (Continue, Score, Chat, ToolCall)):
            active.request = item
            return


def run_batch(
    jobs: Sequence[Job],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_done: Callable[[int, Trajectory | None, BaseException | None], None] | None = None,
    threads: int | None = None,
) -> list[Trajectory | BaseException]:
    """Run every job; result i is job i's trajectory, or the exception a bug ended it with.
    `on_done(i, trajectory, error)` is called as each job finishes (e.g. to store it).
    `threads` (default: the batch size, at least 8) answer tool calls and chat requests, so a
    served model gets the whole batch at once (a pool of endpoints shares it out)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if any(getattr(getattr(job.agent, "llm", None), "one_trajectory_at_a_time", False) for job in jobs):
        batch_size = 1  # e.g. a scripted backend, whose replies are consumed in call order
    results: list[Trajectory | BaseException | None] = [None] * len(jobs)
    queue = list(range(len(jobs)))[::-1]
    active: list[_Active] = []

    def settle() -> None:
        """Start queued jobs up to batch_size; move finished ones to the results."""
        while True:
            for job_state in [a for a in active if a.request is None]:
                active.remove(job_state)
                results[job_state.index] = job_state.trajectory if job_state.error is None else job_state.error
                if on_done:
                    on_done(job_state.index, job_state.trajectory if job_state.error is None else None,
                            job_state.error)
            if not queue or len(active) >= batch_size:
                return
            while queue and len(active) < batch_size:
                i = queue.pop()
                job = jobs[i]
                if not hasattr(job.agent, "core"):  # anything with `.run` (test doubles, wrappers)
                    active.append(_run_alone(i, job))
                    continue
                started = _Active(i, job.agent.core(job.question,
                                                    job.agent.sampling(job.temperature, job.seed, job.top_p)))
                _advance(started)
                active.append(started)

    llms = {id(getattr(job.agent, "llm", None)): getattr(job.agent, "llm", None) for job in jobs}
    session_of = getattr(next(iter(llms.values())), "decode_session", None) if len(llms) == 1 else None
    session = session_of() if session_of is not None and batch_size > 1 else None
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads or max(8, batch_size), thread_name_prefix="rankact-batch") as pool:
        settle()
        if session is not None:
            _continuous(session, active, jobs, pool, settle)
        while active:
            _until_generation(active, jobs, pool, settle)
            if active:
                _answer(active, jobs, pool)
                for job_state in active:
                    _advance(job_state)
                settle()
    return results  # type: ignore[return-value]


def _until_generation(active: list[_Active], jobs: Sequence[Job], pool, settle: Callable[[], None]) -> None:
    """Answer the cheap requests (option scores, tools, chat) and advance, repeatedly, until
    every active job waits on a generation: the long decode then runs with the whole batch."""
    while any(not isinstance(a.request, Continue) for a in active):
        waiting = [a for a in active if not isinstance(a.request, Continue)]
        _answer(waiting, jobs, pool)
        for job_state in waiting:
            _advance(job_state)
        settle()


def _continuous(session, active: list[_Active], jobs: Sequence[Job], pool, settle: Callable[[], None]) -> None:
    """Token-level scheduling on a backend's decode session: generation requests join the
    running decode as they arrive and leave as they finish; option scores, tools and chat are
    answered between decode steps."""
    decoding: dict[int, _Active] = {}
    while active:
        _until_generation(active, jobs, pool, settle)
        for job_state in active:
            if job_state.index not in decoding:
                session.add(job_state.index, job_state.request.ids, job_state.request.config)
                decoding[job_state.index] = job_state
        try:
            done = session.step()
        except Exception as exc:  # noqa: BLE001 - every decoding job gets the failure
            done = [(index, exc) for index in list(decoding)]
            session.clear()
        for index, completion in done:
            job_state = decoding.pop(index)
            job_state.answer = completion
            _advance(job_state)
        settle()


def _run_alone(index: int, job: Job) -> _Active:
    """A job whose agent only offers `.run`: run to the end now, outside the lockstep."""
    sampling = {k: v for k, v in (("temperature", job.temperature), ("seed", job.seed), ("top_p", job.top_p))
                if v is not None}
    done = _Active(index, core=None)
    try:
        done.trajectory = job.agent.run(job.question, **sampling)
    except Exception as exc:  # noqa: BLE001 - the job's result
        done.error = exc
    return done


def _answer(active: list[_Active], jobs: Sequence[Job], pool) -> None:
    """Answer the jobs' requests: LLM primitives batched per backend, tools and chat requests
    concurrently."""
    futures = {}
    for a in active:
        agent = jobs[a.index].agent
        if isinstance(a.request, ToolCall):
            futures[pool.submit(agent.call_tool, a.request)] = a
        elif isinstance(a.request, Chat):
            futures[pool.submit(agent.answer, a.request)] = a
    for kind, call in ((Continue, "continue_batch"), (Score, "score_batch")):
        by_llm: dict[int, list[_Active]] = {}
        for a in active:
            if isinstance(a.request, kind):
                by_llm.setdefault(id(jobs[a.index].agent.llm), []).append(a)
        for group in by_llm.values():
            llm = jobs[group[0].index].agent.llm
            batched = getattr(llm, call, None)
            try:
                if batched is None:  # a backend without batching: one row at a time
                    answers = [jobs[a.index].agent.answer(a.request) for a in group]
                elif kind is Continue:
                    answers = batched([a.request.ids for a in group], [a.request.config for a in group])
                else:
                    answers = batched([a.request.ids for a in group], [a.request.options for a in group])
            except Exception as exc:  # noqa: BLE001 - each job's core decides what a failure means
                answers = [exc] * len(group)
            for a, value in zip(group, answers, strict=True):
                a.answer = value
    for future in concurrent.futures.as_completed(futures):
        futures[future].answer = future.result()
