"""`rankact collect TASKS.jsonl --samples K --db URL`: run the agent K times per task with
seeded sampling and store the trajectories for ranking. Rerunning resumes: tasks with K
trajectories are skipped, partial ones are completed. A run the backend failed (an outage)
is retried, then left out; the command then ends with one `error:` line saying how many
samples are missing, and the same command run again collects exactly those.
`--demonstrations FILE` also records written demonstrations of the tasks' questions
(alignment.feedback.demonstrations.recording), each once, to be ranked with the samples."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rankact.agent.batch import DEFAULT_BATCH_SIZE
from rankact.agent.loop import DEFAULT_MAX_STEPS
from rankact.alignment.feedback.collection.collect import DEFAULT_RETRIES, DEFAULT_RETRY_WAIT
from rankact.cli.options import (
    DEFAULT_DB,
    ApiKey,
    BatchSize,
    Db,
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
def collect(
    tasks: Annotated[Path, typer.Argument(help="task file: JSON lines with id, question, answers")],
    samples: Annotated[int, typer.Option("--samples", "-k", min=1, help="trajectories per task (K)")] = 4,
    db: Db = DEFAULT_DB,
    index: Annotated[Path | None, typer.Option(help="retrieval index folder for the search tool")] = None,
    model: Annotated[str, typer.Option(help="model: default, a folder, an http(s) URL (several, comma-separated: "
                                         "one pool of endpoints) or scripted:PATH")]
    = "default",
    max_steps: Annotated[int, typer.Option(min=1, help="agent steps per run")] = DEFAULT_MAX_STEPS,
    temperature: Annotated[float, typer.Option(min=0.0, help="sampling temperature (K > 1 needs > 0)")] = 0.8,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="base seed; sample k uses seed + k")] = 0,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    engine: Engine = "torch",
    format: Format = "auto",
    tokenizer: Tokenizer = None,
    token_api: TokenApi = "auto",
    max_in_flight: MaxInFlight = None,
    api_key: ApiKey = None,
    mcp: Mcp = None,
    retries: Annotated[int, typer.Option(min=0, help="times a run the backend failed is run again")]
    = DEFAULT_RETRIES,
    retry_wait: Annotated[float, typer.Option(min=0.0, help="seconds before the first retry (doubled each time)")]
    = DEFAULT_RETRY_WAIT,
    demonstrations: Annotated[Path | None, typer.Option(
        help="JSON lines of written demonstrations of these tasks' questions: each is run through the agent's "
             "tools and stored beside the samples (local models only)")] = None,
) -> None:
    """Run the agent K times per task and store every trajectory."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rankact.agent.build import load_index
    from rankact.agent.llm import load_llm
    from rankact.alignment.errors import CommandError
    from rankact.alignment.feedback.collection.collect import collect as run_collect
    from rankact.alignment.feedback.collection.collect import samples_to_run
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
    from rankact.alignment.tasks import load_tasks
    from rankact.alignment.tasks.agents import TaskAgents
    from rankact.tools.mcp import mcp_tools

    if samples > 1 and temperature == 0:  # greedy decoding: K copies of one trajectory, nothing to rank
        raise CommandError(f"--samples {samples} at --temperature 0 gives {samples} identical trajectories; "
                           "sample with a temperature above 0 (e.g. 0.8)")
    console = Console(stderr=True, soft_wrap=True)
    task_list = load_tasks(tasks)
    matched = []
    if demonstrations is not None:  # checked before the model loads
        from rankact.alignment.feedback.demonstrations.recording import match_tasks, read_demonstrations

        matched = match_tasks(read_demonstrations(demonstrations), task_list)
    store = TrajectoryStore(db)
    todo = samples_to_run(task_list, store, samples)
    if todo == 0 and not matched:
        console.print(f"all {len(task_list)} tasks already have {samples} trajectories (or rankings, which close "
                      f"them) in {store.url}")
        return
    served = served_options(model, api_key, tokenizer, token_api, max_in_flight)
    retriever = load_index(index) if index is not None else None
    with mcp_tools(mcp or []) as server_tools:  # a bad --mcp fails before the model loads
        with console.status(f"loading {model}"):
            agents = TaskAgents(load_llm(model, engine=engine, **served), retriever=retriever, max_steps=max_steps,
                                format=format, extra_tools=server_tools)
        if matched and not agents(task_list[0]).guided:  # before collecting, not after
            raise CommandError(f"--demonstrations needs a local model under guided decoding; {model} is not one")
        columns = (TextColumn("[bold]collect"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("", total=todo)

            def advance(task, k, trajectory):
                status = trajectory.status if trajectory is not None else "failed"
                progress.update(bar, advance=1, description=f"{task.id} #{k}: {status}")

            def retrying(count, wait, reason):
                progress.console.print(f"{count} runs hit an outage ({reason}); retrying in {wait:g} s")

            report = run_collect(task_list, agents, store, samples=samples, temperature=temperature, seed=seed,
                                 batch_size=batch_size, retries=retries, retry_wait=retry_wait,
                                 on_sample=advance, on_retry=retrying)
        if matched:
            from rankact.alignment.feedback.demonstrations.recording import add_demonstrations

            added = add_demonstrations(store, matched, agents)
            console.print(f"stored {added} demonstrations ({len(matched) - added} were already stored)")
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(report.by_status.items())) or "none"
    console.print(f"stored {report.added} trajectories ({statuses}) for {report.completed} tasks; "
                  f"{report.skipped} tasks were already complete; db {store.url}")
    if report.closed:
        console.print(f"{report.closed} tasks miss samples but their questions already have rankings, which take "
                      "no new trajectories: collect them into a new store (or a new question version)")
    report.raise_if_incomplete()  # one `error:` line, exit status 2
