"""The policy a trainer updates: loading it (optionally with LoRA) and saving it.

- `load_policy`: a causal LM (the embedded model by default) in float32, optionally wrapped
  with LoRA adapters (peft); the tokenizer gets a pad token if it lacks one.
- `enable_gradient_checkpointing`: the decoder layers' activations recomputed in backward.
- `save_policy`: an ordinary `save_pretrained` folder (model + tokenizer) that `load_llm`
  and `AutoModelForCausalLM` load as is; LoRA is merged first, so no peft is needed to use it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rankact.agent.errors import ModelLoadError
from rankact.alignment.training.config import LoraSettings


def resolve_base(base: str | Path | None) -> Path:
    if base is None or str(base) in ("", "embedded", "default", "base"):
        from rankact.agent.llm.model_files import base_model_dir, default_model_dir

        # "base": the embedded model untuned; otherwise what `--model default` runs
        return base_model_dir() if str(base) == "base" else default_model_dir()
    path = Path(base)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"not a model folder (no config.json): {path}")
    return path


def load_tokenizer(base: str | Path | None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base(base))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: Path):
    """A causal LM in float32: the trainers run on CPU, where half precision is slow and loses
    the small log-prob differences DPO and PPO work with (CUDA runs add autocast on top)."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load a causal LM from {path}: {exc}") from None


def load_policy(base: str | Path | None, lora: LoraSettings | None = None):
    """-> (model, tokenizer), LoRA adapters added when `lora` is given."""
    path = resolve_base(base)
    model = load_causal_lm(path)
    tokenizer = load_tokenizer(path)
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def load_trainable(config):
    """(model, tokenizer, trainable parameters, AdamW) for a policy trainer's config."""
    model, tokenizer = load_policy(config.base, config.lora)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return model, tokenizer, params, optimizer


def apply_lora(model, settings: LoraSettings, task_type: str | None = "CAUSAL_LM"):
    """Wrap `model` with LoRA adapters (peft). The reward model passes task_type=None: its
    backbone is read through its decoder, not as a language model."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, task_type=task_type)
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model) -> None:
    """Keep only each decoder layer's input for backward and recompute the rest (a training-mode
    switch: eval and no-grad passes, rollouts included, run as usual). Non-reentrant: it needs
    no input that requires grad (a LoRA model's embeddings are frozen) and works under DDP."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


def save_policy(model, tokenizer, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write a plain model folder. LoRA adapters are merged into a copy of the weights, so the
    model passed in keeps training (or being evaluated) unchanged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if is_peft(model):
        import copy

        plain = copy.deepcopy(model).merge_and_unload()
    else:
        plain = model
    plain.config.use_cache = True
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "rankact_policy.json").write_text(json.dumps(metadata or {}, indent=2, default=str))
    return folder
