"""`--config FILE` on every config-generated command: a recipe file supplies the options,
the command line overrides it, and a bad file is one clear error."""
from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from rankact.cli.config_options import config_command


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: str = Field(description="tasks")
    rounds: int = Field(2, ge=1, description="rounds")
    out_dir: Path = Field(Path("runs/x"), description="out")
    sampled: bool = Field(False, description="flag")


def _app(seen: list):
    app = typer.Typer()
    config_command(app, "go", Recipe, seen.append, help="run", required=("tasks",))
    app.command("noop")(lambda: None)  # a group, so the command is addressed by name
    return app


def _run(args, tmp_path: Path):
    seen: list[Recipe] = []
    result = CliRunner().invoke(_app(seen), ["go", *args])
    return result, seen


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'tasks = "arith:dev"\nrounds = 5\nout-dir = "runs/r"\nsampled = true\n'),
    (".json", '{"tasks": "arith:dev", "rounds": 5, "out_dir": "runs/r", "sampled": true}'),
])
def test_the_file_supplies_the_options(tmp_path, suffix, text):
    path = tmp_path / f"recipe{suffix}"
    path.write_text(text)
    result, seen = _run(["--config", str(path)], tmp_path)
    assert result.exit_code == 0, result.output
    assert seen == [Recipe(tasks="arith:dev", rounds=5, out_dir=Path("runs/r"), sampled=True)]


def test_the_command_line_overrides_the_file_and_defaults_do_not(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('tasks = "arith:dev"\nrounds = 5\n')
    result, seen = _run(["--config", str(path), "--rounds", "2", "--out", "elsewhere"], tmp_path)
    assert result.exit_code == 0, result.output
    # --rounds 2 equals the default, but was typed: it wins over the file's 5.
    assert seen[0].rounds == 2 and seen[0].out_dir == Path("elsewhere") and seen[0].tasks == "arith:dev"


def test_required_options_still_required_without_a_file(tmp_path):
    from rankact.alignment.errors import CommandError

    seen: list = []
    result = CliRunner().invoke(_app(seen), ["go"])
    assert isinstance(result.exception, CommandError) and "missing option --tasks" in str(result.exception)
    assert not seen


@pytest.mark.parametrize("text,message", [
    ('tasks = "a"\nround = 3\n', "unknown setting 'round'"),
    ("tasks = [unclosed\n", "cannot read config file"),
    ('tasks = "a"\nrounds = 0\n', "invalid --rounds"),
])
def test_a_bad_file_is_one_clear_error(tmp_path, text, message):
    from rankact.alignment.errors import CommandError

    path = tmp_path / "recipe.toml"
    path.write_text(text)
    seen: list = []
    result = CliRunner().invoke(_app(seen), ["go", "--config", str(path)])
    assert isinstance(result.exception, CommandError) and message in str(result.exception)
    assert not seen
