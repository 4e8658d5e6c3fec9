"""Several task sets evaluated with the same models, shown side by side, each set labelled in or
out of distribution: a gain on the training generator's own questions says little until the
held-out phrasings (or tools) move too.

A set's distribution comes from its tasks' `metadata["distribution"]` (`in` for the phrasings a
recipe trains on, `out` for held-out ones: `arith-phrased` / `arith-heldout`); a set without it
(a task file, a QA preset) shows "-".
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from rich.table import Table

from rankact.alignment.tasks import Task


class TaskSetReports(BaseModel):
    """One task set's reports, one per model, in the order the models were given."""

    tasks: str
    distribution: str = "-"
    reports: list[Any] = Field(default_factory=list)  # EvalReport, one per model


def distribution_of(tasks: Sequence[Task]) -> str:
    labels = {task.metadata.get("distribution", "-") for task in tasks}
    return labels.pop() if len(labels) == 1 else "mixed"


def side_by_side_table(sets: Sequence[TaskSetReports], metric: str = "success") -> Table:
    """Rows: task sets; columns: models; cells: the metric with its 95% interval."""
    labels = [report.label for report in sets[0].reports] if sets else []
    table = Table(title=f"{metric} by task set, in and out of distribution")
    for column in ("task set", "distribution", "tasks", *labels):
        table.add_column(column, justify="left" if column in ("task set", "distribution") else "right")
    for task_set in sets:
        cells = []
        for report in task_set.reports:
            low, high = report.intervals.get(metric, (0.0, 0.0))
            cells.append(f"{getattr(report, metric):.1%} [{low:.0%}, {high:.0%}]")
        n = task_set.reports[0].n if task_set.reports else 0
        table.add_row(task_set.tasks, task_set.distribution, str(n), *cells)
    return table
