"""`rankact ask "question"`: run the ReAct agent, showing each step as it happens."""
from __future__ import annotations

import sys

import typer

from rankact.agent.loop import DEFAULT_MAX_STEPS
from rankact.cli.options import (
    ApiKey,
    Engine,
    Format,
    MaxInFlight,
    Mcp,
    Model,
    TokenApi,
    Tokenizer,
    Trace,
    served_options,
)

app = typer.Typer(add_completion=False)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question to answer."),
    model: Model = "default",
    max_steps: int = typer.Option(DEFAULT_MAX_STEPS, "--max-steps", min=1,
                                  help="Most tool-using steps before a forced answer."),
    guided: bool = typer.Option(True, "--guided/--no-guided",
                                help="Guided decoding (local models only; off for HTTP and scripted backends)."),
    as_json: bool = typer.Option(False, "--json", help="Print the trajectory as JSON instead of live steps."),
    index: str | None = typer.Option(None, "--index", help="A retrieval index folder: adds the search tool."),
    k: int = typer.Option(3, "--k", min=1, help="Passages per search."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (reproducible runs)."),
    api_key: ApiKey = None,
    engine: Engine = "torch",
    format: Format = "auto",
    tokenizer: Tokenizer = None,
    token_api: TokenApi = "auto",
    max_in_flight: MaxInFlight = None,
    trace: Trace = None,
    mcp: Mcp = None,
) -> None:
    """Answer QUESTION with the ReAct agent (calculator, plus search with --index, plus --mcp servers' tools)."""
    from rankact.agent.build import build_agent, load_index
    from rankact.agent.llm import load_llm
    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.tools.mcp import mcp_tools

    if not question.strip():
        from rankact.alignment.errors import CommandError

        raise CommandError("the question is empty")
    quiet_libraries()
    if trace:  # before the model: a bad value or a missing package fails fast
        from rankact.agent import tracing

        tracing.configure(trace)
    retriever = load_index(index) if index else None  # before the model: a bad folder fails fast
    with mcp_tools(mcp or []) as server_tools:  # so does a bad --mcp; the servers stop on the way out
        llm = load_llm(model, engine=engine, **served_options(model, api_key, tokenizer, token_api, max_in_flight))
        # --guided is the default: it means "where the backend allows it".
        agent = build_agent(llm, retriever=retriever, max_steps=max_steps, search_k=k, guided=guided, format=format,
                            extra_tools=server_tools)
        sampling = {"temperature": temperature, "seed": seed}
        if as_json:
            trajectory = agent.run(question, **sampling)
            sys.stdout.write(trajectory.to_json(indent=2) + "\n")
        else:
            trajectory = _show_live(agent, question, sampling)
    _fail_if_the_backend_failed(trajectory)


def _fail_if_the_backend_failed(trajectory) -> None:
    """A run the backend ended (server down, bad reply, exhausted script) is a failed command:
    one error line and a non-zero exit, after the trajectory was shown."""
    from rankact.agent.errors import BackendError

    failure = trajectory.backend_failure if trajectory is not None else None
    if failure is not None:
        raise BackendError(f"the model's backend failed: {failure}")


def _show_live(agent, question: str, sampling: dict):
    from rich.console import Console
    from rich.markup import escape

    from rankact.agent import events as ev
    from rankact.agent.prompt import render_input

    console = Console(highlight=False)
    trajectory = None
    with console.status("thinking...") as status:
        for event in agent.stream(question, **sampling):
            if isinstance(event, ev.StepStart):
                label = "forced answer" if event.forced_answer else f"step {event.index + 1}"
                status.update(f"{label}: thinking...")
                console.rule(label, style="dim")
            elif isinstance(event, ev.Thought):
                console.print(f"[cyan]Thought:[/] {escape(event.text)}")
            elif isinstance(event, ev.Action):
                console.print(f"[magenta]Action:[/] {escape(event.tool)}  "
                              f"[magenta]Input:[/] {escape(render_input(event.input))}")
                status.update(f"running {event.tool}...")
            elif isinstance(event, ev.Error):
                console.print(f"[red]{event.kind} error:[/] {escape(event.message)}")
            elif isinstance(event, ev.Observation):
                style = "red" if event.is_error else "green"
                console.print(f"[{style}]Observation:[/] {escape(event.text)}")
            elif isinstance(event, ev.FinalAnswer):
                console.print(f"[bold green]Final Answer:[/] {escape(event.text)}")
            elif isinstance(event, ev.Done):
                trajectory = event.trajectory
    if trajectory is None:  # pragma: no cover - the loop always ends with Done
        return None
    u = trajectory.usage
    console.print(
        f"[dim]status {trajectory.status} · {len(trajectory.steps)} steps · {u.llm_calls} LLM calls · "
        f"{u.completion_tokens} generated tokens · {u.seconds:.1f} s[/]"
    )
    if trajectory.citations:
        console.print("[dim]sources: " + ", ".join(escape(c.source or c.chunk_id) for c in trajectory.citations) + "[/]")
    return trajectory  # a backend failure is the command's error line (`_fail_if_the_backend_failed`)
