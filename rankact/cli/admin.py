"""`rankact admin ...`: accounts and their tokens. Whoever can open the database can run these,
so this is how a store gets its first admin (`rankact admin create NAME --role admin`)."""
from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from rankact.cli.options import DEFAULT_DB, Db

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Manage accounts (admin, annotator, ingest) and their tokens.")


class RoleOption(StrEnum):
    annotator = "annotator"
    admin = "admin"
    ingest = "ingest"


Name = Annotated[str, typer.Argument(help="the account's name (shown with its rankings)")]


def _store(db: str, *, create: bool = False):
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    return TrajectoryStore(db, create=create)


@app.command("create")
def create(
    name: Name,
    role: Annotated[RoleOption, typer.Option(help="admin: reads everything, writes questions and trajectories; "
                                                  "annotator: ranks; ingest: only posts trajectories")]
    = RoleOption.annotator,
    db: Db = DEFAULT_DB,
) -> None:
    """Create an account and print its token (shown once; only its hash is stored)."""
    with _store(db, create=True) as store:
        typer.echo(store.create_account(name, role.value))


@app.command("create-annotator")
def create_annotator(
    name: Name,
    db: Db = DEFAULT_DB,
    admin: Annotated[bool, typer.Option("--admin", help="make an admin instead")] = False,
) -> None:
    """Create an annotator (shorthand for `create NAME --role annotator`) and print its token."""
    with _store(db, create=True) as store:
        typer.echo(store.create_account(name, "admin" if admin else "annotator"))


@app.command("rotate")
def rotate(name: Name, db: Db = DEFAULT_DB) -> None:
    """Print a new token for the account; its old token stops working (a revoked account is re-enabled)."""
    with _store(db) as store:
        typer.echo(store.rotate_token(name))


@app.command("revoke")
def revoke(
    name: Name, db: Db = DEFAULT_DB,
    drop_data: Annotated[bool, typer.Option(
        "--drop-data", help="also delete every end-user vote this account relayed (an app's votes)")] = False,
) -> None:
    """Stop the account's token from working; the account and its rankings stay. A revoked app's
    votes are left out of exports from now on; --drop-data deletes them."""
    with _store(db) as store:
        store.revoke(name)
        dropped = store.drop_app_votes(name) if drop_data else None
    typer.echo(f"revoked {name} (`rankact admin rotate {name}` gives it a new token)", err=True)
    if dropped is not None:
        typer.echo(f"deleted {dropped} end-user vote{'s' if dropped != 1 else ''} relayed by {name}", err=True)


@app.command("list")
def list_accounts(db: Db = DEFAULT_DB) -> None:
    """List accounts with their role and how many rankings each has given."""
    from collections import Counter

    with _store(db) as store:
        counts = Counter(r.annotator for r in store.rankings())
        accounts = store.accounts()
    if not accounts:
        typer.echo("no accounts")
        return
    for a in accounts:
        role = "" if a.role == "annotator" else f" ({a.role})"
        revoked = " [revoked]" if a.revoked else ""
        typer.echo(f"{a.name}{role}{revoked}\t{counts.get(a.name, 0)} rankings\tcreated {a.created_at:%Y-%m-%d %H:%M}")
