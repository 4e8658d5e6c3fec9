"""`rankact generate "prompt"`: stream a model's reply to stdout."""
from __future__ import annotations

import sys

import typer

from rankact.cli.options import ApiKey, Engine, Model

app = typer.Typer(add_completion=False)


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The user message."),
    model: Model = "default",
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Most new tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (0, 1]."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (reproducible output)."),
    system: str | None = typer.Option(None, "--system", help="An optional system message."),
    api_key: ApiKey = None,
    server_model: str | None = typer.Option(None, "--server-model",
                                            help="Model name on an HTTP server (default: its first model)."),
    engine: Engine = "torch",
) -> None:
    """Stream a model's reply to PROMPT."""
    from rankact.agent.llm import ChatMessage, GenerationConfig
    from rankact.agent.llm.loading import load_llm
    from rankact.alignment.errors import CommandError

    if top_p <= 0:
        raise CommandError("--top-p must be greater than 0")
    from rankact.agent.llm.quiet import quiet_libraries

    quiet_libraries()
    kwargs = {"api_key": api_key, "model": server_model} if model.startswith(("http://", "https://")) else {}
    llm = load_llm(model, engine=engine, **kwargs)
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [
        ChatMessage(role="user", content=prompt)
    ]
    config = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    for piece in llm.stream(messages, config):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
