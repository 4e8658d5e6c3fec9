"""`rankact serve --db URL`: the ranking page at / and the JSON API under /api (docs at /docs)."""
from __future__ import annotations

from typing import Annotated

import typer

from alignment.cli.options import DEFAULT_DB, Db

app = typer.Typer(add_completion=False)


@app.command()
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
    lease: Annotated[float, typer.Option(min=1, help="seconds a question stays reserved for its annotator")] = 600,
) -> None:
    """Serve the ranking page and its JSON API."""
    import uvicorn
    from rich.console import Console

    from alignment.feedback.service import create_app
    from alignment.feedback.store import TrajectoryStore

    console = Console(stderr=True, soft_wrap=True)
    store = TrajectoryStore(db)
    questions = store.questions()
    annotators = store.annotators()
    console.print(f"rankact feedback service on http://{host}:{port}/  (API docs: /docs)  db: {store.url}")
    console.print(f"{len(questions)} questions, {sum(q.trajectories for q in questions)} trajectories, "
                  f"{len(annotators)} annotators")
    if not annotators:
        console.print("[yellow]no annotators yet: create a token with "
                      f"`rankact admin create-annotator NAME --db {db}`[/yellow]")
    uvicorn.run(create_app(store, lease_seconds=lease), host=host, port=port, log_level="info")
