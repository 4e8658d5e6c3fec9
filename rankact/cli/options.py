"""Options several commands share, declared once."""
from __future__ import annotations

from typing import Annotated

import typer

from rankact.alignment.feedback.store.database import DEFAULT_URL, is_in_memory


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

# The model an agent or a reply comes from; every backend `rankact.agent.llm.load_llm` accepts.
Model = Annotated[str, typer.Option("--model", "-m",
                                    help="default (aligned) | base (untuned) | PATH (model folder or .gguf) | "
                                    "http(s)://HOST/v1 (several, comma-separated: one pool) | scripted:PATH")]
# Which engine runs a local model (HTTP and scripted backends ignore it).
Engine = Annotated[str, typer.Option("--engine", help="local models: torch (the trained model, exact) | "
                                     "ctranslate2 (int8, faster, log-probs differ) | auto (ctranslate2 if installed)")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="RANKACT_API_KEY",
                                            help="Bearer token for an HTTP server (or OPENAI_API_KEY).")]

# Trajectories advanced together in lockstep (agent.batch): the speed of collect, eval and PPO.
BatchSize = Annotated[int, typer.Option("--batch-size", min=1,
                                        help="trajectories decoded together (1: one at a time)")]

# OpenTelemetry spans of every agent run (agent.tracing); RANKACT_OTEL sets it for every command.
Trace = Annotated[str | None, typer.Option("--trace", envvar="RANKACT_OTEL", show_envvar=True,
                                           help="OpenTelemetry spans of each run: console (JSON lines on "
                                           "stderr) | otlp (to OTEL_EXPORTER_OTLP_ENDPOINT); needs rankact[otel]")]

# Served models: how the agent calls tools, and token-in/token-out (agent.build, agent.llm.token_io).
Format = Annotated[str, typer.Option("--format", help="auto (native for OpenAI-compatible servers, react for the "
                                     "rest) | react (Thought/Action text) | native (the server's tool calls)")]
Tokenizer = Annotated[str | None, typer.Option(
    "--tokenizer", help="servers: the served model's tokenizer (a folder, 'default', or a cached hub name): "
    "token ids in and out, so trajectories train exactly")]
TokenApi = Annotated[str, typer.Option("--token-api", help="with --tokenizer: auto | vllm | llamacpp")]
# A pool of endpoints ("http://a/v1,http://b/v1"): requests in flight per endpoint (agent.llm.endpoint_pool).
MaxInFlight = Annotated[int | None, typer.Option(
    "--max-in-flight", min=1, help="servers: requests at once per endpoint (default 8 in a pool of "
    "comma-separated URLs, unlimited for one URL)")]


def served_options(model: str, api_key: str | None = None, tokenizer: str | None = None,
                   token_api: str = "auto", max_in_flight: int | None = None) -> dict:
    """`load_llm` keywords for an HTTP model (none for local and scripted ones)."""
    if not model.startswith(("http://", "https://")):
        if tokenizer is not None:
            from rankact.alignment.errors import CommandError

            raise CommandError("--tokenizer is for served models (--model http://HOST/v1); a local model "
                               "already records its token ids")
        return {}
    return {"api_key": api_key, "tokenizer": tokenizer, "token_api": token_api, "max_in_flight": max_in_flight}


# MCP servers whose tools the agent also gets (tools.mcp): a command line or an http(s) URL.
Mcp = Annotated[list[str] | None, typer.Option(
    "--mcp", help='MCP server: a command ("python my_server.py", over stdio) or an http(s):// URL '
                  '(streamable HTTP); repeat for several')]
