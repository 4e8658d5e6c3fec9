"""`rankact feedback ...`: export rankings as preference data, statistics, the simulated
annotator, lookup demonstrations written from gold answers, and sample data for trying the
ranking page."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rankact.cli.options import DEFAULT_DB, Db

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Export rankings and end users' votes, and show feedback statistics.")



@app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="output file (JSON Lines)")],
    format: Annotated[str, typer.Option(
        help="pairs: preference pairs with whole trajectories; trl: {prompt, chosen, rejected}; "
             "kto: end users' thumbs as {prompt, completion, label} (TRL's KTOTrainer); "
             "rankings: the raw rankings; feedback: the raw end-user votes")] = "pairs",
    source: Annotated[str | None, typer.Option(
        help="whose feedback: annotator (the ranking page), simulated, ranked (both), end-user (an app's users), "
             "or all. Default: ranked for pairs, trl and rankings; end-user for kto and feedback")] = None,
    exclude_app: Annotated[list[str] | None, typer.Option(
        "--exclude-app", help="leave out the votes this app (ingest account) relayed; repeatable")] = None,
    include_revoked: Annotated[bool, typer.Option(
        help="keep the votes of revoked apps (left out by default)")] = False,
    db: Db = DEFAULT_DB,
) -> None:
    """Write rankings and end users' votes as JSON Lines: preference pairs (ties dropped), TRL text
    pairs, a KTO set, or the raw records. End users' votes are in pairs and trl only with
    --source end-user or all."""
    from rankact.alignment.errors import CommandError
    from rankact.alignment.feedback.preferences.export import FORMATS, SOURCES, default_source, write_export
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
    from rankact.alignment.output_file import check_target

    if format not in FORMATS:
        raise CommandError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    source = source or default_source(format)
    if source not in SOURCES:
        raise CommandError(f"--source must be one of {', '.join(SOURCES)}, not {source!r}")
    check_target(out)
    count = write_export(TrajectoryStore(db, create=False), format, out, source, exclude_apps=exclude_app or (),
                         include_revoked=include_revoked)
    typer.echo(f"wrote {count} {format} lines ({source}) to {out}")


@app.command("stats")
def stats(
    db: Db = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Counts (questions, trajectories, rankings, pairs by source, end users' votes), agreement
    between annotators and of end users with annotators."""
    from rich.console import Console
    from rich.table import Table

    from rankact.alignment.feedback.preferences.agreement import feedback_stats
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    result = feedback_stats(TrajectoryStore(db, create=False))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    table = Table(title="feedback", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")

    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    table.add_row("questions", fmt(result.questions))
    table.add_row("  with >= 2 trajectories", fmt(result.questions_rankable))
    table.add_row("  ranked", fmt(result.questions_ranked))
    table.add_row("  ranked by >= 2 annotators", fmt(result.questions_multiply_ranked))
    table.add_row("trajectories", fmt(result.trajectories))
    table.add_row("rankings", fmt(result.rankings))
    for source, n in sorted(result.rankings_by_source.items()):
        table.add_row(f"  {source}", fmt(n))
    table.add_row("preference pairs", fmt(result.pairs))
    for source, n in sorted(result.pairs_by_source.items()):
        table.add_row(f"  {source}", fmt(n))
    table.add_row("annotators", ", ".join(f"{a} ({n})" for a, n in sorted(result.annotators.items())) or "-")
    table.add_row("annotator pairs compared", fmt(result.annotator_pairs_compared))
    table.add_row("mean Kendall tau-b", fmt(result.mean_kendall_tau))
    table.add_row("pair agreement rate", fmt(result.pair_agreement_rate))
    end_user = result.end_user
    if end_user.votes:
        table.add_row("end-user votes", fmt(end_user.votes))
        for kind, n in sorted(end_user.by_kind.items()):
            table.add_row(f"  {kind}", fmt(n))
        table.add_row("  up / down / neutral", f"{end_user.up} / {end_user.down} / {end_user.neutral}")
        table.add_row("  end users", fmt(end_user.end_users))
        table.add_row("  trajectories desirable / undesirable / tied",
                      f"{end_user.trajectories_desirable} / {end_user.trajectories_undesirable} / "
                      f"{end_user.trajectories_tied}")
        table.add_row("  pairs from choices / thumbs", f"{end_user.pairs_from_choices} / {end_user.pairs_from_thumbs}")
        table.add_row("  agreement with annotators",
                      f"{fmt(end_user.annotator_agreement_rate)} over {end_user.annotator_pairs_compared} pairs")
    Console().print(table)


@app.command("simulate")
def simulate(
    db: Db = DEFAULT_DB,
    name: Annotated[str, typer.Option(help="annotator name the rankings are stored under")] = "simulated",
    criteria: Annotated[str, typer.Option(help="process: answer, evidence, then finished, fewer errors, fewer "
                                               "steps; outcome: answer and evidence only, the rest ties")] = "process",
) -> None:
    """Rank every unranked question that has gold answers with the simulated annotator
    (answer correct, evidence found, then process); stored with source=simulated."""
    from rankact.alignment.errors import CommandError
    from rankact.alignment.feedback.collection.simulated import SimulatedAnnotator
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    if criteria not in ("process", "outcome"):
        raise CommandError(f"--criteria must be process or outcome, not {criteria!r}")
    if not 1 <= len(name) <= 128:  # the rule every annotator name follows (admin create-annotator)
        raise CommandError("--name must have 1 to 128 characters")
    store = TrajectoryStore(db, create=False, write=True)
    stored = SimulatedAnnotator(name, criteria).annotate_all(store)
    typer.echo(f"{name} ranked {len(stored)} questions")


@app.command("lookup-demonstrations")
def lookup_demonstrations(
    tasks: Annotated[str, typer.Argument(help="task file (JSONL with gold answers) or a DEV preset: nq:dev, "
                                              "hotpot:dev (they bring their passages as the index)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="demonstrations file to write (JSONL)")],
    index: Annotated[Path | None, typer.Option(help="retrieval index folder the agent will search (needed "
                                                    "with a task file)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="stop after N demonstrations")] = None,
    k: Annotated[int, typer.Option(min=1, help="passages per search: the agent's --k")] = 3,
    data: Annotated[Path | None, typer.Option(help="evaluation data folder (default ../shared/data)")] = None,
) -> None:
    """Write lookup demonstrations from gold answers: search with the question, answer with the
    gold answer the passages hold (none where they hold none). Feed the file to `rankact
    collect --demonstrations` or a rounds config; they are labelled as written from gold."""
    from rankact.agent.build import load_index
    from rankact.alignment.errors import CommandError
    from rankact.alignment.feedback.demonstrations.lookup import lookup_demonstrations as write_from_gold
    from rankact.alignment.feedback.demonstrations.recording import write_demonstrations
    from rankact.alignment.tasks.datasets import parse_preset
    from rankact.alignment.tasks.indexes import tasks_and_index
    from rankact.tools.search import SearchTool

    preset = None if Path(tasks).is_file() else parse_preset(tasks)
    if preset is not None and preset[1] != "dev":
        raise CommandError(f"{tasks}: demonstrations train the policy, so they are written from DEV questions "
                           "only; TEST is for reporting")
    task_list, preset_index = tasks_and_index(tasks, data, with_index=index is None)
    folder = index or preset_index
    if folder is None:
        raise CommandError("a lookup demonstration searches: give --index (the index the agent will search)")
    if not any(t.answers for t in task_list):
        raise CommandError(f"{tasks} has no gold answers to write demonstrations from")
    search = SearchTool(load_index(folder), k=k)
    written = write_demonstrations(write_from_gold(task_list, lambda q: search.run(q).text, limit=limit), out)
    if not written:
        raise CommandError(f"none of the {len(task_list)} questions' passages hold a gold answer: nothing written")
    typer.echo(f"wrote {written} lookup demonstrations to {out} (from {tasks}; questions whose passages hold "
               "no gold answer were skipped)")


@app.command("demo-data")
def demo_data(db: Db = DEFAULT_DB) -> None:
    """Add three sample questions with three hand-written trajectories each (no model needed)."""
    from rankact.alignment.feedback.collection.sample_data import load_sample_data
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    store = TrajectoryStore(db)
    added = load_sample_data(store)
    typer.echo(f"added {added} sample trajectories to {store.url}" if added else
               f"the sample data is already in {store.url}")


@app.command("replay-dead-letters")
def replay_dead_letters(
    target: Annotated[str, typer.Option(help="where the recorder sends: the service's URL (http://HOST:PORT) or a "
                                             "store URL (sqlite:///FILE, postgresql://...)")],
    spool: Annotated[Path | None, typer.Option(help="the recorder's spool folder (default: the target's, "
                                                    "under the rankact cache)")] = None,
    token: Annotated[str | None, typer.Option(envvar="RANKACT_INGEST_TOKEN", show_envvar=True,
                                              help="an ingest token, for a service URL")] = None,
) -> None:
    """Send a recorder's dead letters again once their cause is fixed (a Host the service did not
    serve, a size limit, a bug); each leaves dead-letter.jsonl only once it is stored. Lines
    still in the spool are sent too."""
    from rankact.alignment.errors import CommandError
    from rankact.alignment.feedback.recorder.recorder import Recorder

    with Recorder(target, token=token, spool_dir=spool) as recorder:
        report = recorder.replay_dead_letters()
        recorder.flush(timeout=recorder.close_timeout)
    typer.echo(f"{report.stored} stored ({report.duplicates} were stored already), {report.refused} refused again, "
               f"{report.kept} left in {report.dead_letter}")
    if report.kept:
        raise CommandError(f"{report.kept} dead letters not stored: {report.last_error}")
