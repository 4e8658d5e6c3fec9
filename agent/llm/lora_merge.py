"""Merging a LoRA adapter saved in PEFT's format into plain weights.

The default model is the embedded SmolLM2 plus the adapter rankact's own rounds trained
(`agent/llm/default_adapter/`). Merging it once into a cached folder lets every engine
(transformers, CTranslate2) and every trainer load an ordinary model folder. It is written
here rather than with peft because the merge is one matrix product per layer, and peft's
loader needs the model built first; the format stays PEFT's, so `PeftModel.from_pretrained`
loads the same adapter (a test checks both give the same logits).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rankact.agent.errors import ModelLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."


def read_adapter(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(adapter config, tensors) of a PEFT LoRA adapter folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"not a LoRA adapter folder: {folder} ({exc})") from exc
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"not a LoRA adapter: {folder} (peft_type {config.get('peft_type')!r})")
    return config, tensors


def lora_scale(config: dict[str, Any]) -> float:
    r, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    return alpha / r**0.5 if config.get("use_rslora") else alpha / r


def merge_lora(state: dict[str, Any], config: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """A new state dict: W + scale * B @ A for every adapted linear layer of `state`.

    Raises ModelLoadError when the adapter names a layer the weights lack or the shapes do not
    fit (an adapter trained for another model), or uses per-layer ranks we do not read."""
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("fan_in_fan_out"):
        raise ModelLoadError("adapter uses rank_pattern/alpha_pattern/fan_in_fan_out, which this merge does "
                             "not read; merge it with peft instead")
    scale = lora_scale(config)
    merged = dict(state)
    layers = {key[: -len(".lora_A.weight")] for key in tensors if key.endswith(".lora_A.weight")}
    if not layers:
        raise ModelLoadError("the adapter holds no lora_A/lora_B weights")
    for layer in sorted(layers):
        a, b = tensors[f"{layer}.lora_A.weight"], tensors.get(f"{layer}.lora_B.weight")
        name = layer.removeprefix(_PREFIX) + ".weight"
        if b is None or name not in state:
            raise ModelLoadError(f"the adapter does not fit these weights: no {name!r}")
        weight = state[name]
        if tuple(b.shape[:1]) + tuple(a.shape[1:]) != tuple(weight.shape):
            raise ModelLoadError(f"the adapter does not fit these weights: {name} is {tuple(weight.shape)}, "
                                 f"the adapter's update is {(b.shape[0], a.shape[1])}")
        update = (b.float() @ a.float()) * scale
        merged[name] = (weight.float() + update).to(weight.dtype)
    return merged
