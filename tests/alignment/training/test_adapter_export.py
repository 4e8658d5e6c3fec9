"""Exporting a trained policy as a LoRA adapter and merging it back: PEFT's loader and
rankact's merge must both reproduce the trained policy."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm.lora_merge import merge_lora, read_adapter
from rankact.agent.llm.model_files import adapted_model_dir
from rankact.alignment.errors import CommandError
from rankact.alignment.training.adapter_export import export_adapter, factor


def _train_like_rounds(base, out, rounds=2, seed=0):
    """Merge `rounds` random rank-4 LoRA updates into the base, as rounds do."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(seed)
    for _ in range(rounds):
        lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
        model = lora.merge_and_unload()
    model.save_pretrained(out)
    return model


def test_factor_is_exact_at_full_rank_and_reports_what_a_smaller_rank_keeps():
    torch.manual_seed(0)
    delta = torch.randn(12, 4) @ torch.randn(4, 10)  # rank 4
    a, b, kept = factor(delta, 4)
    assert torch.allclose(b @ a, delta, atol=1e-5) and kept == pytest.approx(1.0)
    a, b, kept = factor(delta, 2)
    assert 0.3 < kept < 1.0
    assert float(torch.linalg.norm(b @ a)) == pytest.approx(kept * float(torch.linalg.norm(delta)), rel=1e-4)


def test_exported_adapter_reproduces_the_policy_in_peft_and_in_our_merge(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tuned = _train_like_rounds(tiny_model_dir, tmp_path / "tuned", rounds=2)
    report = export_adapter(tiny_model_dir, tmp_path / "tuned", tmp_path / "adapter", rank=8, dtype="float32")
    assert report.kept_min == pytest.approx(1.0, abs=1e-6)  # two rank-4 rounds fit in rank 8
    assert report.layers == 2 * 7  # q k v o gate up down in each of 2 layers

    ids = torch.tensor([[1, 5, 9, 200, 31, 7]])
    want = tuned(ids).logits
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert torch.allclose(peft_model(ids).logits, want, atol=1e-4)

    merged = adapted_model_dir(tiny_model_dir, tmp_path / "adapter", cache_dir=tmp_path / "cache")
    ours = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    assert torch.allclose(ours(ids).logits, want, atol=1e-4)
    assert (merged / "tokenizer.json").is_file()
    # The merged folder is cached: a second call reuses it.
    assert adapted_model_dir(tiny_model_dir, tmp_path / "adapter", cache_dir=tmp_path / "cache") == merged


def test_export_refuses_changes_a_lora_adapter_cannot_carry(tiny_model_dir, tmp_path):
    state = load_file(str(tiny_model_dir / "model.safetensors"))
    state["model.norm.weight"] = state["model.norm.weight"] + 0.1
    (tmp_path / "tuned").mkdir()
    save_file(state, str(tmp_path / "tuned" / "model.safetensors"))
    with pytest.raises(CommandError, match="model.norm.weight changed"):
        export_adapter(tiny_model_dir, tmp_path / "tuned", tmp_path / "adapter")
    with pytest.raises(CommandError, match="equals its base"):
        export_adapter(tiny_model_dir, tiny_model_dir, tmp_path / "adapter")


def test_merge_refuses_an_adapter_for_another_model(tmp_path):
    state = {"model.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8)}
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 2}
    tensors = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(2, 6),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(8, 2)}
    with pytest.raises(ModelLoadError, match="does not fit"):
        merge_lora(state, config, tensors)
    tensors = {"base_model.model.model.layers.9.mlp.up_proj.lora_A.weight": torch.ones(2, 8),
               "base_model.model.model.layers.9.mlp.up_proj.lora_B.weight": torch.ones(8, 2)}
    with pytest.raises(ModelLoadError, match="no 'model.layers.9.mlp.up_proj.weight'"):
        merge_lora(state, config, tensors)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        read_adapter(tmp_path)


def test_merge_applies_the_scale_alpha_over_r():
    state = {"m.weight": torch.zeros(2, 3)}
    tensors = {"base_model.model.m.lora_A.weight": torch.ones(1, 3),
               "base_model.model.m.lora_B.weight": torch.full((2, 1), 2.0)}
    merged = merge_lora(state, {"r": 1, "lora_alpha": 4}, tensors)
    assert torch.equal(merged["m.weight"], torch.full((2, 3), 8.0))
    assert torch.equal(state["m.weight"], torch.zeros(2, 3))  # the input is left alone
