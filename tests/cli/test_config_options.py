"""`rankact align` options come from the trainers' configs: every setting is an option, and
every option's default is the config's (a default is never written twice)."""
from __future__ import annotations

import pytest
import typer

from rankact.alignment.training.dpo_config import DPOConfig
from rankact.alignment.training.ppo.config import PPOConfig
from rankact.alignment.training.reward.config import RewardTrainConfig
from rankact.alignment.training.sft_config import SFTConfig
from rankact.cli.align import app
from rankact.cli.config_options import HIDDEN, flag

CONFIGS = {"sft": SFTConfig, "dpo": DPOConfig, "ppo": PPOConfig, "reward": RewardTrainConfig}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_field_is_an_option_with_the_configs_default(name):
    config_cls = CONFIGS[name]
    command = typer.main.get_command(app).commands[name]
    options = {p.name: p for p in command.params}
    for field_name, field in config_cls.model_fields.items():
        if field_name in HIDDEN:
            continue
        option = options[field_name]
        assert flag(field_name) in option.opts
        if field_name == "lora":
            assert field.default is None and option.default is False  # the switch for DEFAULT_LORA
        elif field.is_required():  # may come from --config: build_config checks it
            assert option.default is None and "(required)" in option.help, field_name
        else:
            assert option.default == field.default, field_name


def test_the_lora_switch_turns_on_the_trainers_own_lora_settings():
    from rankact.cli.config_options import build_config

    reward = build_config(RewardTrainConfig, {"out_dir": "o", "lora": True})
    dpo = build_config(DPOConfig, {"out_dir": "o", "lora": True})
    assert reward.lora == RewardTrainConfig.DEFAULT_LORA and dpo.lora == DPOConfig.DEFAULT_LORA
    assert reward.lora != dpo.lora and build_config(DPOConfig, {"out_dir": "o", "lora": False}).lora is None


def test_one_default_store_url():
    import inspect

    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
    from rankact.cli import options

    assert options.DEFAULT_DB == inspect.signature(TrajectoryStore).parameters["url"].default


def _rounds_app(seen: list):
    from rankact.alignment.rounds_config import RoundsConfig
    from rankact.cli.config_options import config_command

    app = typer.Typer()
    config_command(app, "rounds", RoundsConfig, seen.append, help="rounds", required=("tasks", "heldout"))
    app.command("noop")(lambda: None)  # a group, so the command is addressed by name
    return app


def test_rounds_take_trainer_settings_as_json_or_a_recipe_table(tmp_path):
    from typer.testing import CliRunner

    seen: list = []
    base = ["rounds", "--tasks", "arith:dev", "--heldout", "arith:dev", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(_rounds_app(seen), [*base, "--method", "grpo", "--trainer", '{"kl-coef": 0.3}'])
    assert result.exit_code == 0, result.output
    assert seen[-1].trainer_config(out_dir=tmp_path).kl_coef == 0.3
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('method = "dpo"\ntrain_steps = 5\n[trainer]\nbeta = 0.25\n')
    result = CliRunner().invoke(_rounds_app(seen), [*base, "--config", str(recipe)])
    assert result.exit_code == 0, result.output
    config = seen[-1].trainer_config(out_dir=tmp_path)
    assert (config.beta, config.max_steps) == (0.25, 5)
    assert len(seen) == 2


@pytest.mark.parametrize(("value", "message"), [
    ("[1]", "invalid --trainer: not a JSON object"),
    ('{"bogus": 1}', "trainer setting 'bogus' is not a setting of SFTConfig"),
])
def test_a_bad_trainer_option_is_one_clear_error(tmp_path, value, message):
    from rankact.alignment.errors import CommandError
    from rankact.alignment.rounds_config import RoundsConfig
    from rankact.cli.config_options import build_config

    with pytest.raises(CommandError, match=message):
        build_config(RoundsConfig, {"out_dir": tmp_path, "tasks": "arith:dev", "heldout": "arith:dev",
                                    "trainer": value})
