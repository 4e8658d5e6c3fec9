"""Evaluation: run an agent on tasks with gold answers and summarize what it did.

Definitions (per task, then averaged over tasks):
- `em`: SQuAD exact match of the final answer against any gold answer.
- `f1`: SQuAD token F1, best over the gold answers.
- `success`: the run *finished* (status `finished`, a real final answer, not a forced one
  after max_steps) AND a normalized gold answer appears inside the normalized final answer
  (the lenient "contains" match; a small model often answers in a sentence).
- `parse_error_rate`: parse errors per step, over all steps of all runs.
- `parse_error_share`: share of runs with at least one parse error.
- `mean_steps`, `mean_tokens` (generated tokens per run), `tokens_per_s` (generated tokens
  over the seconds spent in the LLM, or over wall time where a backend reports none),
  `wall_s` (the whole evaluation).

A run that raises is recorded as status `error` with no answer; evaluation goes on. Runs
that errored count as failures, never dropped, outages included (the backend failed, not the
model: `outages` counts them, so a report says when its numbers are not the model's alone).
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field
from rich.table import Table

from rankact.agent.batch import DEFAULT_BATCH_SIZE, Job, run_batch
from rankact.agent.build import DEFAULT_MAX_STEPS
from rankact.agent.errors import BackendError
from rankact.agent.trajectory import Trajectory
from rankact.alignment.evaluation.metrics import answer_contains, exact_match, token_f1
from rankact.alignment.evaluation.significance import (
    PairedDifference,
    bootstrap_interval,
    paired_difference,
    wilson_interval,
)
from rankact.alignment.tasks import Task
from rankact.alignment.tasks.agents import TaskAgents, per_task


class AgentLike(Protocol):
    def run(self, question: str, **kwargs: Any) -> Trajectory: ...


class TaskResult(BaseModel):
    task_id: str
    question: str
    answers: list[str]
    prediction: str | None
    status: str
    em: float
    f1: float
    success: float
    steps: int
    parse_errors: int
    tokens: int
    llm_seconds: float
    seconds: float
    error: str | None = None
    outage: bool = False  # the backend failed this run (server down, HTTP error), not the model
    trajectory_id: str | None = None


class EvalReport(BaseModel):
    label: str = ""
    n: int = 0
    em: float = 0.0
    f1: float = 0.0
    success: float = 0.0
    parse_error_rate: float = 0.0
    parse_error_share: float = 0.0
    mean_steps: float = 0.0
    mean_tokens: float = 0.0
    tokens_per_s: float = 0.0
    wall_s: float = 0.0
    statuses: dict[str, int] = Field(default_factory=dict)
    outages: int = Field(0, description="runs the backend failed; counted as failures like every error")
    # 95% intervals: Wilson for the rates (em, success), bootstrap for the mean F1
    intervals: dict[str, tuple[float, float]] = Field(default_factory=dict)
    results: list[TaskResult] = Field(default_factory=list)


def score_trajectory(task: Task, trajectory: Trajectory, seconds: float = 0.0) -> TaskResult:
    answer = trajectory.final_answer
    forced = any(step.forced_answer for step in trajectory.steps)
    finished = trajectory.status == "finished" and answer is not None and not forced
    return TaskResult(
        task_id=task.id, question=task.question, answers=task.answers, prediction=answer,
        status=trajectory.status,
        em=exact_match(answer, task.answers), f1=token_f1(answer, task.answers),
        success=answer_contains(answer, task.answers) if finished else 0.0,
        steps=len(trajectory.steps), parse_errors=trajectory.parse_errors,
        tokens=trajectory.usage.completion_tokens, llm_seconds=trajectory.usage.llm_seconds,
        seconds=seconds or trajectory.usage.seconds, trajectory_id=trajectory.id,
        error=trajectory.backend_failure, outage=trajectory.backend_failure is not None,
    )


def failed_result(task: Task, error: BaseException, seconds: float) -> TaskResult:
    return TaskResult(
        task_id=task.id, question=task.question, answers=task.answers, prediction=None, status="error",
        em=0.0, f1=0.0, success=0.0, steps=0, parse_errors=0, tokens=0, llm_seconds=0.0, seconds=seconds,
        error=f"{error.__class__.__name__}: {error}", outage=isinstance(error, BackendError),
    )


def summarize(results: Sequence[TaskResult], label: str = "", wall_s: float | None = None) -> EvalReport:
    """Pure aggregation of per-task results into a report."""
    n = len(results)
    if n == 0:
        return EvalReport(label=label, wall_s=wall_s or 0.0)
    steps = sum(r.steps for r in results)
    tokens = sum(r.tokens for r in results)
    llm_seconds = sum(r.llm_seconds for r in results)
    seconds = sum(r.seconds for r in results)
    timed = llm_seconds if llm_seconds > 0 else seconds
    em, success = sum(r.em for r in results), sum(r.success for r in results)
    intervals = {"em": wilson_interval(em, n), "success": wilson_interval(success, n),
                 "f1": bootstrap_interval([r.f1 for r in results])}
    return EvalReport(
        label=label, n=n,
        em=em / n,
        f1=sum(r.f1 for r in results) / n,
        success=success / n,
        parse_error_rate=sum(r.parse_errors for r in results) / steps if steps else 0.0,
        parse_error_share=sum(1 for r in results if r.parse_errors) / n,
        mean_steps=steps / n,
        mean_tokens=tokens / n,
        # over the run's wall time when known: batched runs share their LLM seconds, so summing each
        # run's own LLM time would count a shared decode once per row
        tokens_per_s=tokens / wall_s if wall_s else (tokens / timed if timed > 0 else 0.0),
        wall_s=seconds if wall_s is None else wall_s,
        statuses=dict(Counter(r.status for r in results)),
        outages=sum(r.outage for r in results),
        intervals=intervals,
        results=list(results),
    )


def report_from_trajectories(tasks: Sequence[Task], trajectories: Sequence[Trajectory], label: str = "") -> EvalReport:
    """A report for already-recorded runs (task i ran as trajectory i)."""
    if len(tasks) != len(trajectories):
        raise ValueError(f"{len(tasks)} tasks but {len(trajectories)} trajectories")
    return summarize([score_trajectory(t, tr) for t, tr in zip(tasks, trajectories, strict=True)], label)


def evaluate(
    agents: Callable[[Task], AgentLike] | AgentLike,
    tasks: Sequence[Task],
    *,
    label: str = "",
    progress: bool = True,
    on_result: Callable[[TaskResult, Trajectory | None], None] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> EvalReport:
    """Run each task greedily with its agent (`agents(task)`, e.g. `TaskAgents`, or one agent
    for all), `batch_size` trajectories in lockstep (`rankact.agent.batch`). A run that raises is
    counted as an error, not fatal: one bad question must not lose an hour of evaluation."""
    agent_for = per_task(agents)
    results: list[TaskResult | None] = [None] * len(tasks)
    start = time.perf_counter()
    with progress_bar(progress, label) as bar:
        job = bar.add_task(label or "evaluating", total=len(tasks))

        def finished(i: int, trajectory: Trajectory | None, error: BaseException | None) -> None:
            task = tasks[i]
            seconds = trajectory.usage.seconds if trajectory is not None else 0.0
            if error is not None:
                results[i] = failed_result(task, error, seconds)
            else:
                results[i] = score_trajectory(task, trajectory, seconds)
            if on_result:
                on_result(results[i], trajectory)
            bar.advance(job)

        run_batch([Job(agent_for(task), task.question) for task in tasks], batch_size=batch_size, on_done=finished)
    return summarize([r for r in results if r is not None], label, wall_s=time.perf_counter() - start)


def evaluate_llm(llm: Any, tasks: Sequence[Task], *, retriever: Any = None, max_steps: int = DEFAULT_MAX_STEPS,
                 label: str = "", progress: bool = True,
                 on_result: Callable[[TaskResult, Trajectory | None], None] | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, format: str = "auto",
                 extra_tools: Sequence[Any] = ()) -> EvalReport:
    """`evaluate` with each task's agent built over `llm` (`TaskAgents`: the tools it names, plus
    `extra_tools`, e.g. an MCP server's)."""
    return evaluate(TaskAgents(llm, retriever=retriever, max_steps=max_steps, format=format, extra_tools=extra_tools),
                    tasks, label=label,
                    progress=progress, on_result=on_result, batch_size=batch_size)


def model_label(spec: str) -> str:
    """A short column title for a model spec (a folder's last two parts)."""
    if spec.startswith(("http://", "https://", "scripted:")) or spec in ("default", "base"):
        return spec
    parts = Path(spec).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else spec


def progress_bar(enabled: bool, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("eta"), TimeRemainingColumn(), disable=not enabled, transient=True,
    )


# (label, attribute, format) rows of the comparison table
ROWS: list[tuple[str, str, str]] = [
    ("tasks", "n", "{:d}"),
    ("exact match", "em", "{:.1%}"),
    ("token F1", "f1", "{:.1%}"),
    ("success (finished + contains gold)", "success", "{:.1%}"),
    ("parse errors per step", "parse_error_rate", "{:.1%}"),
    ("runs with a parse error", "parse_error_share", "{:.1%}"),
    ("mean steps", "mean_steps", "{:.2f}"),
    ("mean generated tokens", "mean_tokens", "{:.1f}"),
    ("tokens/s", "tokens_per_s", "{:.1f}"),
    ("wall time (s)", "wall_s", "{:.1f}"),
]


def comparison_table(reports: Sequence[EvalReport], title: str = "evaluation") -> Table:
    """One table, one column per report (e.g. before and after alignment); rates carry their
    95% interval."""
    table = Table(title=title)
    table.add_column("metric")
    for i, report in enumerate(reports):
        table.add_column(report.label or f"model {i + 1}", justify="right")
    for name, attr, fmt in ROWS:
        cells = []
        for r in reports:
            cell = fmt.format(getattr(r, attr))
            if attr in r.intervals:
                low, high = r.intervals[attr]
                cell += f" [{low:.0%}, {high:.0%}]"
            cells.append(cell)
        table.add_row(name, *cells)
    statuses = sorted({s for r in reports for s in r.statuses})
    table.add_row("statuses", *(", ".join(f"{s} {r.statuses.get(s, 0)}" for s in statuses) for r in reports))
    if any(r.outages for r in reports):
        table.add_row("[red]backend failures[/red] (in error)", *(f"{r.outages:d}" for r in reports))
    return table


PAIRED_METRICS: list[tuple[str, str, bool]] = [("success", "success", True), ("exact match", "em", True),
                                               ("token F1", "f1", False)]


def paired_differences(reports: Sequence[Any],
                       metrics: Sequence[tuple[str, str, bool]] = PAIRED_METRICS) -> list[PairedDifference]:
    """Each report after the first against the first, task by task (the same tasks in the same
    order: `evaluate` keeps one result per task, failures included), on each (name, result
    attribute, binary) of `metrics`. Any report with `label` and `results` of `task_id`s will do
    (the refusal eval's too)."""
    if len(reports) < 2:
        return []
    first = reports[0]
    out = []
    for other in reports[1:]:
        if [r.task_id for r in other.results] != [r.task_id for r in first.results]:
            raise ValueError(f"{other.label} and {first.label} did not run the same tasks: no paired comparison")
        for name, attr, binary in metrics:
            out.append(paired_difference(name, first.label, other.label,
                                         [float(getattr(r, attr)) for r in first.results],
                                         [float(getattr(r, attr)) for r in other.results], binary=binary))
    return out


def paired_table(differences: Sequence[PairedDifference]) -> Table:
    """Differences against the first model: paired bootstrap 95% interval; p: exact McNemar for
    pass/fail metrics, paired sign-flip permutation for token F1."""
    table = Table(title=f"paired against {differences[0].baseline}" if differences else "paired")
    for column in ("model", "metric", "difference [95% CI]", "gained / lost", "p"):
        table.add_column(column, justify="left" if column in ("model", "metric") else "right")
    for d in differences:
        table.add_row(d.other, d.metric, f"{d.difference:+.1%} [{d.low:+.1%}, {d.high:+.1%}]",
                      "" if d.gained is None else f"{d.gained} / {d.lost}",
                      "" if d.p_value is None else f"{d.p_value:.3g}")
    return table
