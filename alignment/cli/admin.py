"""`rankact admin ...`: annotators and their tokens."""
from __future__ import annotations

from typing import Annotated

import typer

from alignment.cli.options import DEFAULT_DB, Db

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Manage annotators and their tokens.")



@app.command("create-annotator")
def create_annotator(
    name: Annotated[str, typer.Argument(help="the annotator's name (shown with their rankings)")],
    db: Db = DEFAULT_DB,
    admin: Annotated[bool, typer.Option("--admin", help="mark as an administrator")] = False,
) -> None:
    """Create an annotator and print their token (shown once; only its hash is stored)."""
    from alignment.feedback.store import TrajectoryStore

    token = TrajectoryStore(db).create_annotator(name, is_admin=admin)
    typer.echo(token)


@app.command("list")
def list_annotators(db: Db = DEFAULT_DB) -> None:
    """List annotators with how many rankings each has given."""
    from collections import Counter

    from alignment.feedback.store import TrajectoryStore

    store = TrajectoryStore(db, create=False)
    counts = Counter(r.annotator for r in store.rankings())
    annotators = store.annotators()
    if not annotators:
        typer.echo("no annotators")
        return
    for a in annotators:
        role = " (admin)" if a.is_admin else ""
        typer.echo(f"{a.name}{role}\t{counts.get(a.name, 0)} rankings\tcreated {a.created_at:%Y-%m-%d %H:%M}")
