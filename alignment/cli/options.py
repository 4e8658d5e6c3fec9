"""Options several commands share, declared once."""
from __future__ import annotations

from typing import Annotated

import typer

from alignment.feedback.store_schema import DEFAULT_URL, is_in_memory


def _lasting_db(value: str) -> str:
    # An in-memory store would take a command's work and lose it when the command ends.
    if is_in_memory(value):
        raise typer.BadParameter(f"{value!r} is an in-memory database, gone when the command ends; "
                                 "give a file path or a database URL")
    return value


# The trajectory store every feedback command reads and writes; its default is the store's own.
Db = Annotated[str, typer.Option("--db", callback=_lasting_db,
                                 help="store URL (sqlite:///FILE or postgresql://...) or a file path")]
DEFAULT_DB = DEFAULT_URL

# The model an agent or a reply comes from; every backend `agent.llm.load_llm` accepts.
Model = Annotated[str, typer.Option("--model", "-m",
                                    help="default | PATH (model folder or .gguf) | http(s)://HOST/v1 | scripted:PATH")]
# Which engine runs a local model (HTTP and scripted backends ignore it).
Engine = Annotated[str, typer.Option("--engine", help="local models: torch (the trained model, exact) | "
                                     "ctranslate2 (int8, faster, log-probs differ) | auto (ctranslate2 if installed)")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="RANKACT_API_KEY",
                                            help="Bearer token for an HTTP server (or OPENAI_API_KEY).")]

# Trajectories advanced together in lockstep (agent.batch): the speed of collect, eval and PPO.
BatchSize = Annotated[int, typer.Option("--batch-size", min=1,
                                        help="trajectories decoded together (1: one at a time)")]
