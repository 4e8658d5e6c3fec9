"""`--model default` is the embedded model with the adapter rankact's own rounds trained;
`--model base` is the embedded model untuned. Both resolve to plain cached folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rankact.agent.llm import model_files
from rankact.agent.llm.local import resolve_model_dir
from rankact.agent.llm.lora_merge import ADAPTER_WEIGHTS, merge_lora, read_adapter


def test_the_package_ships_the_adapter_with_its_recipe():
    config, tensors = read_adapter(model_files.DEFAULT_ADAPTER)
    assert config["peft_type"] == "LORA" and config["r"] >= 1
    assert (model_files.DEFAULT_ADAPTER / ADAPTER_WEIGHTS).stat().st_size < 20_000_000  # a few MB, not a model
    recipe = json.loads((model_files.DEFAULT_ADAPTER / "recipe.json").read_text())
    assert "alignment/recipes/default-adapter.toml" in recipe["recipe"]
    assert all(t.dtype == torch.float16 for t in tensors.values())


def test_the_recipes_demonstrations_are_right_answers_to_its_training_questions(tmp_path):
    from rankact.alignment.rounds import Rounds, RoundsConfig
    from rankact.cli.config_options import read_config_file

    root = Path(__file__).resolve().parents[2]
    values = read_config_file(root / "alignment/recipes/default-adapter.toml", RoundsConfig)
    values.update(out_dir=tmp_path, demonstrations=root / values["demonstrations"])
    rounds = Rounds(RoundsConfig(**values))  # refuses a demonstration that is not a training question
    assert len(rounds.demonstrations) == sum("(" in t.question for t in rounds.train) > 0
    for demonstration, task in rounds.demonstrations:
        assert demonstration.steps[-1].final_answer in task.answers


def test_default_is_base_plus_the_adapter_and_base_is_untuned(embedded_model_dir):
    base_folder, base_name = resolve_model_dir("base")
    default_folder, default_name = resolve_model_dir("default")
    assert base_folder == embedded_model_dir and base_name == model_files.EMBEDDED_NAME
    assert default_folder != base_folder and default_name == model_files.ALIGNED_NAME
    base, default = load_file(str(base_folder / "model.safetensors")), load_file(str(default_folder / "model.safetensors"))
    config, tensors = read_adapter(model_files.DEFAULT_ADAPTER)
    want = merge_lora(base, config, tensors)
    changed = [k for k in base if not torch.equal(base[k], default[k])]
    assert changed and all(torch.equal(default[k], want[k]) for k in changed)
    assert not any("embed" in k or "norm" in k for k in changed)  # only the adapted linear layers
    assert (default_folder / "tokenizer.json").read_bytes() == (base_folder / "tokenizer.json").read_bytes()


def test_without_a_shipped_adapter_default_is_the_base_model(monkeypatch, tmp_path, embedded_model_dir):
    monkeypatch.setattr(model_files, "DEFAULT_ADAPTER", tmp_path / "none")
    assert model_files.default_model_dir() == embedded_model_dir
    assert resolve_model_dir("default")[1] == model_files.EMBEDDED_NAME


@pytest.mark.parametrize("spec", ["default", "base"])
def test_load_llm_accepts_both_embedded_names(spec, monkeypatch):
    from rankact.agent.llm import loading

    seen = {}

    class Fake:
        def __init__(self, model, **kwargs):
            seen["model"] = model

    monkeypatch.setattr("rankact.agent.llm.local.TransformersLLM", Fake)
    loading.load_llm(spec)
    assert seen["model"] == spec


@pytest.mark.slow
def test_the_default_agent_passes_the_expression_to_the_calculator():
    """What the adapter learned: the base model computes in its Thought and hands its own
    (often wrong) result to the calculator, and splits (a + b) * c into a + b; the default
    agent hands it the whole expression."""
    from rankact.agent.build import build_agent
    from rankact.agent.llm.local import TransformersLLM

    agent = build_agent(TransformersLLM("default"), tools=["calculator"], max_steps=3)
    for question, expression, answer in [("What is 17 * 23?", "17 * 23", "391"),
                                         ("What is 345 + 678?", "345 + 678", "1023"),
                                         ("What is (25 + 17) * 3?", "(25 + 17) * 3", "126")]:
        trajectory = agent.run(question)
        assert trajectory.status == "finished" and answer in trajectory.final_answer
        assert trajectory.steps[0].action == "calculator"
        assert trajectory.steps[0].action_input == {"expression": expression}


def test_trainers_start_from_base_or_default_by_the_same_names(embedded_model_dir):
    from rankact.alignment.training.policy import resolve_base

    assert resolve_base("base") == embedded_model_dir
    assert resolve_base("default") == resolve_base(None) == model_files.default_model_dir()
