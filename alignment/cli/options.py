"""Options several commands share, declared once."""
from __future__ import annotations

from typing import Annotated

import typer

from alignment.feedback.store_schema import DEFAULT_URL

# The trajectory store every feedback command reads and writes; its default is the store's own.
Db = Annotated[str, typer.Option("--db", help="store URL (sqlite:///FILE or postgresql://...) or a file path")]
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

# MCP servers whose tools the agent also gets (tools.mcp): a command line or an http(s) URL.
Mcp = Annotated[list[str] | None, typer.Option(
    "--mcp", help='MCP server: a command ("python my_server.py", over stdio) or an http(s):// URL '
                  '(streamable HTTP); repeat for several')]
