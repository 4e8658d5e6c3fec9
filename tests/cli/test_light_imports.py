"""`rankact ... --help` must not load torch or transformers: the commands' options are built from
the trainers' configs, so the configs (and every command module) import pydantic only."""
from __future__ import annotations

import json
import subprocess
import sys

from rankact.cli.main import COMMANDS

CONFIG_MODULES = [
    "rankact.alignment.training.config",
    "rankact.alignment.training.sft_config",
    "rankact.alignment.training.dpo_config",
    "rankact.alignment.training.grpo_config",
    "rankact.alignment.training.ppo.config",
    "rankact.alignment.training.reward.config",
    "rankact.alignment.rounds_config",
]
HEAVY = ["torch", "transformers"]


def _loaded_after_import(modules: list[str]) -> list[str]:
    code = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_hub_every_command_module_and_the_configs_import_no_torch():
    command_modules = sorted({module for module, _help in COMMANDS.values()})
    assert "rankact.cli.align" in command_modules
    modules = ["rankact.cli.main", *command_modules, "rankact.cli.align_policy", "rankact.cli.align_reward",
               "rankact.cli.config_options", *CONFIG_MODULES]
    assert _loaded_after_import(modules) == []


def test_a_config_module_that_pulled_in_torch_would_be_caught():
    # The check above is only worth something if importing a trainer does show up.
    assert "torch" in _loaded_after_import(["rankact.alignment.training.sft"])


def test_align_help_and_dpo_help_run():
    for args, expected in ((["align", "--help"], "dpo"), (["align", "dpo", "--help"], "--beta")):
        done = subprocess.run([sys.executable, "-m", "rankact.cli", *args], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout
