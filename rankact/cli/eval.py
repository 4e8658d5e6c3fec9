"""`rankact eval`: run the agent on tasks and print one table, one column per model.

    rankact eval hotpot:dev --model default --limit 20
    rankact eval tasks.jsonl --index idx/ --model default --model runs/dpo/policy
    rankact eval --refusal --split dev --limit 50 --model default
    rankact eval --refusal benign:test --model base --model default   # over-refusal
    rankact eval arith-phrased:dev,arith-heldout:dev --model base --model runs/x/round-2/policy

Several task sets, comma-separated, are evaluated with the same models and shown side by side,
each labelled in or out of distribution (`arith-phrased` holds the phrasings recipes train on,
`arith-heldout` phrasings held out of training).

A preset (`hotpot`, `nq`, `arith`, `arith-phrased`, `arith-heldout`, each `:dev` or `:test`) builds its tasks from the shared
evaluation data and an index over that split's passages (cached); a task file needs `--index`
when its questions need search.
"""
from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rankact.agent.batch import DEFAULT_BATCH_SIZE
from rankact.agent.loop import DEFAULT_MAX_STEPS
from rankact.alignment.errors import CommandError
from rankact.alignment.output_file import check_target, write_text
from rankact.cli.options import (
    ApiKey,
    BatchSize,
    Engine,
    Format,
    MaxInFlight,
    Mcp,
    TokenApi,
    Tokenizer,
    served_options,
)

app = typer.Typer(add_completion=False)


@app.command()
def evaluate(
    tasks: Annotated[str | None, typer.Argument(
        help="task file (JSONL) or preset hotpot|nq|arith|arith-phrased|arith-heldout[:dev|:test]; several, "
             "comma-separated, are shown side by side (in / out of distribution); with --refusal: "
             "advbench|benign[:dev|:test] or a file of requests")] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="model: default, a folder, an http URL (several, comma-separated: one model "
        "served by a pool of endpoints) or scripted:PATH; repeat --model to compare models")] = None,
    index: Annotated[Path | None, typer.Option(help="retrieval index folder for the search tool")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="evaluate only the first N tasks")] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="agent steps per question")] = DEFAULT_MAX_STEPS,
    refusal: Annotated[bool, typer.Option(help="refusal rate on AdvBench requests instead of QA (or on TASKS: "
                                               "benign:dev|test measures over-refusal)")] = False,
    split: Annotated[str, typer.Option(help="dev or test (with --refusal)")] = "dev",
    agent_mode: Annotated[bool, typer.Option(
        "--agent", help="with --refusal: judge the agent's final answer, not the plain chat reply")] = False,
    data: Annotated[Path | None, typer.Option(help="evaluation data folder (default ../shared/data)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the full reports (per task) as JSON")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the reports as JSON, no table")] = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    engine: Engine = "torch",
    format: Format = "auto",
    tokenizer: Tokenizer = None,
    token_api: TokenApi = "auto",
    max_in_flight: MaxInFlight = None,
    api_key: ApiKey = None,
    mcp: Mcp = None,
) -> None:
    """Evaluate the agent: exact match, token F1, success, parse errors, steps, tokens."""
    from rankact.agent.build import load_index
    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.alignment.evaluation.evaluate import model_label
    from rankact.tools.mcp import mcp_tools

    quiet_libraries()
    if out is not None:
        check_target(out)  # not after an hour of evaluation
    console = Console(stderr=as_json)
    models = model or ["default"]
    if refusal:
        task_list, title = _refusal_requests(tasks, split, data, limit)
        task_sets = [(title, task_list, None)]
    else:
        task_sets = _task_sets(tasks, data, limit, index, console)

    retrievers = {idx: load_index(idx) for _, _, idx in task_sets if idx is not None}
    reports: list[list] = [[] for _ in task_sets]  # per task set, one report per model
    with mcp_tools(mcp or []) as server_tools:  # one connection for every model compared
        for spec in models:
            label = model_label(spec)
            with console.status(f"loading {label}"):
                llm = _load(spec, engine, **served_options(spec, api_key, tokenizer, token_api, max_in_flight))
            for (_, task_list, idx), set_reports in zip(task_sets, reports, strict=True):
                retriever = retrievers.get(idx)
                if refusal:
                    set_reports.append(_refusals(llm, task_list, label, agent_mode, max_steps, retriever,
                                                 server_tools, format))
                else:
                    from rankact.alignment.evaluation.evaluate import evaluate_llm

                    set_reports.append(evaluate_llm(llm, task_list, retriever=retriever, label=label,
                                                    max_steps=max_steps, progress=console.is_terminal,
                                                    batch_size=batch_size, format=format, extra_tools=server_tools))
            del llm
            gc.collect()

    if len(task_sets) > 1:
        _print_sets(task_sets, reports, console, out, as_json)
        return
    title, reports = task_sets[0][0], reports[0]
    if refusal:
        from rankact.alignment.evaluation.refusal import paired_refusals

        paired = paired_refusals(reports)
    else:
        from rankact.alignment.evaluation.evaluate import paired_differences

        paired = paired_differences(reports)
    if out is not None:
        write_text(out, json.dumps([r.model_dump(mode="json") for r in reports], indent=1))
    if as_json:
        typer.echo(json.dumps(_json_summary(reports, paired), indent=1))
        return
    if refusal:
        from rankact.alignment.evaluation.refusal import refusal_table

        console.print(refusal_table(reports, title=title))
        console.print("refusal = the reply contains a refusal phrase (AdvBench's keyword list); "
                      "\\[brackets]: 95% Wilson interval", style="dim")
    else:
        _print_qa(reports, title, console)
    if paired:
        _print_paired(paired, console)


def _task_sets(tasks: str | None, data: Path | None, limit: int | None, index: Path | None,
               console: Console) -> list[tuple[str, list, Path | None]]:
    """(title, tasks, index folder) per comma-separated task file or preset: several sets are
    evaluated with the same models and shown side by side (in / out of distribution)."""
    from rankact.alignment.tasks.datasets import preset_specs
    from rankact.alignment.tasks.indexes import tasks_and_index

    specs = preset_specs(tasks or "")
    if not specs:
        raise CommandError("give a task file or a preset (hotpot:dev, nq:dev, arith:dev), or use --refusal")
    sets = []
    for spec in specs:
        task_list, preset_idx = tasks_and_index(
            spec, data, limit=limit, progress=console.is_terminal,
            on_build=lambda name, n: console.print(f"indexing {n} {name} passages once "
                                                   "(cached for later runs; a few minutes on 2 cores)"),
            with_index=index is None)
        title = spec if len(specs) > 1 else f"{spec} ({len(task_list)} tasks)"
        sets.append((title, task_list, index or preset_idx))
    return sets


def _json_summary(reports: list, paired: list) -> list[dict]:
    summary = [r.model_dump(mode="json", exclude={"results"}) for r in reports]
    for report in summary[1:]:  # each later model against the first
        report["paired_vs_first"] = [d.model_dump(mode="json") for d in paired if d.other == report["label"]]
    return summary


def _print_qa(reports: list, title: str, console: Console) -> None:
    from rankact.alignment.evaluation.evaluate import comparison_table

    console.print(comparison_table(reports, title=title))
    console.print("success = status finished (not a forced answer) and a gold answer appears in the answer; "
                  "\\[brackets]: 95% interval (Wilson; bootstrap for F1); runs that errored count as failures",
                  style="dim")
    for report in reports:
        if report.outages:  # the numbers are not the model's alone: say so, and why
            reason = next(r.error for r in report.results if r.outage)
            console.print(f"{report.outages} of {report.n} runs of {report.label} failed because the backend "
                          f"failed ({reason}); counted as failures", style="red", markup=False)


def _print_paired(paired: list, console: Console) -> None:
    from rankact.alignment.evaluation.evaluate import paired_table

    console.print(paired_table(paired))
    console.print("paired over the same tasks: bootstrap interval of the difference; p: exact McNemar "
                  "test on the tasks where the two disagree (success, exact match), paired sign-flip "
                  "permutation test (token F1)", style="dim")


def _print_sets(task_sets: list, reports: list[list], console: Console, out: Path | None, as_json: bool) -> None:
    """Several task sets: each set's table and paired test, then every set side by side."""
    from rankact.alignment.evaluation.evaluate import paired_differences
    from rankact.alignment.evaluation.side_by_side import TaskSetReports, distribution_of, side_by_side_table

    sets = [TaskSetReports(tasks=title, distribution=distribution_of(task_list), reports=set_reports)
            for (title, task_list, _), set_reports in zip(task_sets, reports, strict=True)]
    paired = [paired_differences(s.reports) for s in sets]
    if out is not None:
        write_text(out, json.dumps([{"tasks": s.tasks, "distribution": s.distribution,
                                     "reports": [r.model_dump(mode="json") for r in s.reports]} for s in sets],
                                   indent=1))
    if as_json:
        typer.echo(json.dumps([{"tasks": s.tasks, "distribution": s.distribution,
                                "reports": _json_summary(s.reports, p)} for s, p in zip(sets, paired, strict=True)],
                              indent=1))
        return
    for task_set, set_paired in zip(sets, paired, strict=True):
        _print_qa(task_set.reports, f"{task_set.tasks} ({task_set.reports[0].n} tasks, "
                                    f"distribution: {task_set.distribution})", console)
        if set_paired:
            _print_paired(set_paired, console)
    console.print(side_by_side_table(sets))


def _load(spec: str, engine: str = "auto", **served):
    from rankact.agent.llm import load_llm

    return load_llm(spec, engine=engine, **served)


def _refusal_requests(tasks: str | None, split: str, data: Path | None, limit: int | None):
    """The requests a refusal eval asks: AdvBench's `split` by default, else a request preset
    (advbench or benign, e.g. benign:test for over-refusal) or a task file."""
    from rankact.alignment.tasks import load_tasks
    from rankact.alignment.tasks.datasets import parse_preset, preset_tasks

    if tasks is None:
        if split not in ("dev", "test"):
            raise CommandError(f"--split must be dev or test, not {split!r}")
        task_list = preset_tasks("advbench", split, data)[:limit]
        return task_list, f"refusals on AdvBench {split} ({len(task_list)} requests)"
    preset = parse_preset(tasks)
    if preset is not None:
        if preset[0] not in ("advbench", "benign"):
            raise CommandError(f"--refusal asks plain requests: use advbench[:dev|:test], benign[:dev|:test] or a "
                               f"task file, not the QA preset {tasks!r}")
        task_list = preset_tasks(*preset, data)[:limit]
    elif Path(tasks).is_file():
        task_list = load_tasks(tasks)[:limit]
    else:
        raise CommandError(f"{tasks!r} is neither a preset (advbench, benign) nor a task file")
    return task_list, f"refusals on {tasks} ({len(task_list)} requests)"


def _refusals(llm, task_list, label, agent_mode, max_steps, retriever, server_tools, format="auto"):
    from rankact.alignment.evaluation.refusal import refusal_eval

    if agent_mode:
        from rankact.agent.build import build_agent

        target = build_agent(llm, retriever=retriever, max_steps=max_steps, extra_tools=server_tools, format=format)
        return refusal_eval(target, task_list, mode="agent", label=label)
    return refusal_eval(llm, task_list, mode="generate", label=label)
