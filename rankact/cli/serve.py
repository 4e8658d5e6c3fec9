"""`rankact serve --db URL`: the ranking page at / and the JSON API under /api (docs at /docs).
Body size limits and per-account write limits: `rankact.alignment.feedback.service.limits`."""
from __future__ import annotations

from typing import Annotated

import typer

from rankact.cli.options import DEFAULT_DB, Db

app = typer.Typer(add_completion=False)


@app.command()
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
    lease: Annotated[float, typer.Option(min=1, help="seconds a question stays reserved for its annotator")] = 600,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="a Host name the service answers besides 127.0.0.1, localhost and [::1] "
                               "(repeatable; the name people use to reach it when --host is not loopback)")] = None,
    vocab_size: Annotated[int | None, typer.Option(
        min=1, help="the model's vocabulary size: posted token ids must be below it")] = None,
    max_body_bytes: Annotated[list[str] | None, typer.Option(
        "--max-body-bytes", help="largest request body: N for every route (trajectories take N; default "
                                 "8 MiB, rankings 1 MiB, feedback 64 KiB), or ROUTE=N for one route "
                                 "(trajectories, rankings, feedback); repeatable")] = None,
    writes_per_minute: Annotated[int, typer.Option(
        min=0, help="requests with a body each account may send per minute (0: no limit)")] = 600,
    write_bytes_per_hour: Annotated[int, typer.Option(
        min=0, help="body bytes each account may send per hour (0: no limit)")] = 256 * 1024 * 1024,
) -> None:
    """Serve the ranking page and its JSON API."""
    import uvicorn
    from pydantic import ValidationError
    from rich.console import Console

    from rankact.alignment.errors import CommandError
    from rankact.alignment.feedback.service import create_app
    from rankact.alignment.feedback.service.hosts import LOOPBACK_HOSTS, allowed_host_names
    from rankact.alignment.feedback.service.limits import ServiceLimits, body_limits_from_options
    from rankact.alignment.feedback.service.server import listen_problem
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    try:
        allowed_host_names(allowed_host or ())
        limits = ServiceLimits(body_bytes=body_limits_from_options(max_body_bytes or ()),
                               writes_per_minute=writes_per_minute, write_bytes_per_hour=write_bytes_per_hour)
    except ValidationError as exc:
        raise CommandError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    store = TrajectoryStore(db)
    problem = listen_problem(host, port)
    if problem:
        raise CommandError(problem)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    questions = store.questions()
    accounts = store.accounts()
    hosts = [*LOOPBACK_HOSTS, *(allowed_host or [])]
    console.print(f"rankact feedback service on http://{host}:{port}/  (API docs: /docs)  db: {store.url}")
    console.print(f"{len(questions)} questions, {sum(q.trajectories for q in questions)} trajectories, "
                  f"{len(accounts)} accounts; answering Host names: {', '.join(hosts)}")
    if not any(a.role == "annotator" and not a.revoked for a in accounts):
        console.print("[yellow]no annotators yet: create a token with "
                      f"`rankact admin create NAME --role annotator --db {db}`[/yellow]")
    if not any(a.role == "admin" and not a.revoked for a in accounts):
        console.print("[yellow]no admin yet (reads of /api need one): "
                      f"`rankact admin create NAME --role admin --db {db}`[/yellow]")
    uvicorn.run(create_app(store, lease_seconds=lease, allowed_hosts=allowed_host or (), vocab_size=vocab_size,
                           limits=limits),
                host=host, port=port, log_level="info")
