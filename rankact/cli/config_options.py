"""Command-line options generated from a trainer's pydantic config.

Each `rankact align` command is built from its config class: one option per field, with
the field's type, default and description, so a default lives in the config alone and the
CLI can never drift from what `train_*` does when called from Python. A few fields read
better as other flags (`out_dir` is `--out`, `learning_rate` is `--lr`); `lora` is a switch
that turns on the trainer's own `DEFAULT_LORA` settings.
"""
from __future__ import annotations

import inspect
import json
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ValidationError

from rankact.alignment.errors import CommandError

FLAGS = {"out_dir": "--out", "learning_rate": "--lr", "loss_type": "--loss"}
# Never options: the CLI always shows progress; stop_after only simulates an interruption in tests.
HIDDEN = {"show_progress", "stop_after"}


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _optional_inner(annotation: Any) -> Any:
    """`X | None` -> X (typer wants the inner type; the None default says it is optional)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def option_parameters(config_cls: type[BaseModel], *, required: Sequence[str] = (),
                      exclude: Sequence[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per config field, for typer to turn into options."""
    params = []
    for name, field in config_cls.model_fields.items():
        if name in HIDDEN or name in exclude:
            continue
        help_text = field.description or ""
        annotation = _optional_inner(field.annotation)
        if name == "lora":  # a switch for the trainer's DEFAULT_LORA settings
            default = typer.Option(False, "--lora", help=help_text)
            annotation = bool
        elif _is_table(annotation):  # a table of settings: a JSON object on the command line
            default = typer.Option(None, flag(name), help=help_text + " (a JSON object)", show_default=False)
            annotation = str | None
        elif annotation is bool:
            default = typer.Option(field.default, f"{flag(name)}/--no-{flag(name)[2:]}", help=help_text)
        else:
            # Required fields may come from --config instead, so the check is build_config's.
            needed = name in required or field.is_required()
            value = None if needed else field.default
            default = typer.Option(value, flag(name), help=help_text + (" (required)" if needed else ""),
                                   show_default=value is not None)
            if needed:
                annotation = annotation | None
            if field.annotation is not annotation and value is not ...:
                annotation = field.annotation  # keeps `X | None`
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=annotation))
    return params


def _is_table(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def _parse_table(name: str, value: Any) -> Any:
    """A JSON object given on the command line -> dict (a config file gives a table already)."""
    if not isinstance(value, str):
        return value
    try:
        table = json.loads(value)
    except ValueError:
        table = None
    if not isinstance(table, dict):
        raise CommandError(f"invalid {flag(name)}: not a JSON object: {value!r}")
    return table


def read_config_file(path: Path, config_cls: type[BaseModel]) -> dict[str, Any]:
    """Settings from a TOML or JSON file (keys are the option names, `-` or `_`): a recipe
    that a rerun reproduces. Options given on the command line override them."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CommandError(f"cannot read config file {path}: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise CommandError(f"config file {path} must hold a table of settings")
    values = {str(key).replace("-", "_"): value for key, value in data.items()}
    known = set(config_cls.model_fields) - HIDDEN
    if unknown := sorted(set(values) - known):
        raise CommandError(f"unknown setting {unknown[0]!r} in {path} (see --help for the options)")
    return values


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def build_config(config_cls: type[BaseModel], values: dict[str, Any]) -> Any:
    """The config from parsed options; an invalid value is one line naming its option."""
    fields = config_cls.model_fields
    values = {k: v for k, v in values.items() if v is not None or not fields[k].is_required()}
    values = {k: _parse_table(k, v) if _is_table(fields[k].annotation) else v for k, v in values.items()
              if v is not None or not _is_table(fields[k].annotation)}  # an unset table keeps its default
    if "lora" in values and isinstance(values["lora"], bool):
        values["lora"] = config_cls.DEFAULT_LORA.model_copy() if values["lora"] else None
    try:
        return config_cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "missing" and name:
            raise CommandError(f"missing option {flag(name)} (on the command line or in --config)") from None
        if not name:  # a check across settings (a model validator): its message names them
            raise CommandError(f"invalid settings: {first['msg'].removeprefix('Value error, ')}") from None
        raise CommandError(f"invalid {flag(name)}: {first['msg']}") from None


def config_command(
    app: typer.Typer,
    name: str,
    config_cls: type[BaseModel],
    run: Callable[..., None],
    *,
    help: str,
    required: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extra: Sequence[inspect.Parameter] = (),
) -> None:
    """Register `rankact align NAME`: its options are `config_cls`'s fields plus `extra`
    parameters; `run(config, **extra_values)` does the work."""
    config_file = inspect.Parameter(
        "config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
        default=typer.Option(None, "--config", exists=True, dir_okay=False,
                             help="TOML or JSON file of these options (a recipe); options given here override it"))
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    params = [context, config_file, *extra, *option_parameters(config_cls, required=required, exclude=exclude)]
    extra_names = {p.name for p in extra}

    def command(ctx: typer.Context, config_file: Path | None, **kwargs: Any) -> None:
        values = {k: v for k, v in kwargs.items() if k not in extra_names}
        if config_file is not None:
            given = {k: v for k, v in values.items() if _from_command_line(ctx, k)}
            values = {**values, **read_config_file(config_file, config_cls), **given}
        config = build_config(config_cls, values)
        run(config, **{k: v for k, v in kwargs.items() if k in extra_names})

    command.__signature__ = inspect.Signature(params)  # what typer reads
    command.__annotations__ = {}
    command.__doc__ = help
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


def _from_command_line(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
