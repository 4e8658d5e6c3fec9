"""`rankact align` options come from the trainers' configs: every setting is an option, and
every option's default is the config's (a default is never written twice)."""
from __future__ import annotations

import pytest
import typer

from rankact.alignment.training.dpo import DPOConfig
from rankact.alignment.training.ppo.config import PPOConfig
from rankact.alignment.training.reward.config import RewardTrainConfig
from rankact.alignment.training.sft import SFTConfig
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
