"""The `rankact` command line: a lazy group over the command modules beside this one.

Every command lives in its own module and is imported only when it runs, so
`rankact --help` is instant. Each module exposes `app`, a typer.Typer. The hub sits in the
top layer (`rankact.cli`), so naming every command here runs no dependency upward.
"""
from __future__ import annotations

import importlib
import os
import sys

import click
import typer

from rankact.errors import RankactError

# name -> (module holding `app`, one-line help shown by `rankact --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("rankact.cli.generate", "Stream a model's reply to a prompt."),
    "ask": ("rankact.cli.ask", "Run the ReAct agent on a question."),
    "index": ("rankact.cli.index", "Build and search a retrieval index."),
    "collect": ("rankact.cli.collect", "Run the agent K times per task and store the trajectories."),
    "serve": ("rankact.cli.serve", "Serve the ranking page and its JSON API."),
    "feedback": ("rankact.cli.feedback", "Export rankings and show feedback statistics."),
    "admin": ("rankact.cli.admin", "Manage accounts (admin, annotator, ingest) and their tokens."),
    "align": ("rankact.cli.align", "Train: reward model, SFT, DPO, PPO."),
    "score": ("rankact.cli.score", "Score a trajectory with a reward model."),
    "eval": ("rankact.cli.eval", "Evaluate the agent on a task file."),
    "demo": ("rankact.cli.demo", "The whole loop on the embedded defaults."),
}


def _load(name: str) -> click.Command:
    module_name, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    command = typer.main.get_command(module.app)
    command.name = name
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            return _load(name)
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name and exc.name.startswith(COMMANDS[name][0].split(".")[0]):
                raise click.UsageError(f"command {name!r} is not available in this build") from exc
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table so listing commands imports nothing heavy.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rankact")
def cli() -> None:
    """rankact: ReAct agents that learn from people's rankings of their trajectories."""


# typer >= 0.29 vendors its own click: its commands raise typer's exception classes,
# which are not subclasses of click's, so both families are caught below.
try:
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # older typer: plain click exceptions
    _TyperClickException = click.ClickException
_CLICK_ERRORS = (click.ClickException, _TyperClickException)
_ABORTS = (click.exceptions.Abort, getattr(typer, "Abort", click.exceptions.Abort))
_EXITS = (click.exceptions.Exit, getattr(typer, "Exit", click.exceptions.Exit))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our commands show their own progress; transformers' per-load "Loading weights" bar
    # (which follows this switch) would only bury it. Set it to 0 to see the bars again.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        rv = cli.main(args=argv, prog_name="rankact", standalone_mode=False)
        # standalone_mode=False makes click return an Exit's code instead of exiting.
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except _EXITS as exc:
        sys.exit(exc.exit_code)
    except _ABORTS:
        click.echo("aborted", err=True)
        sys.exit(130)
    except _CLICK_ERRORS as exc:
        # A bad option or argument: one line, like every other error, naming where help is.
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None and ctx.command_path else ""
        click.echo(f"error: {one_line(exc.format_message())}{where}", err=True)
        sys.exit(getattr(exc, "exit_code", 1) or 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, RankactError):
            raise  # a bug: the traceback is what a bug report needs
        click.echo(f"error: {one_line(str(exc)) or exc.__class__.__name__}", err=True)
        sys.exit(2)


def one_line(message: str) -> str:
    return " ".join(message.split())

if __name__ == "__main__":
    main()
