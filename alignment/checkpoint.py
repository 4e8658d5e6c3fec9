"""Loading the policy to train, saving the trained policy, and checkpoints for resume.

- `load_policy`: a causal LM (the embedded model by default) in float32, optionally wrapped
  with LoRA adapters (peft); the tokenizer gets a pad token if it lacks one.
- `save_policy`: an ordinary `save_pretrained` folder (model + tokenizer) that `load_llm`
  and `AutoModelForCausalLM` load as is; LoRA is merged first, so no peft is needed to use it.
- Checkpoints hold only what resume needs: the trainable parameters (LoRA adapters only,
  when used), optimizer state and a JSON trainer state. Written to a temp folder and renamed,
  so an interrupted save never leaves a half checkpoint that resume would trust.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from agent.errors import ModelLoadError, RankactError

CHECKPOINT_DIR = "checkpoint"
POLICY_DIR = "policy"
_STATE = "state.json"
_TRAINABLE = "trainable.pt"
_OPTIMIZER = "optimizer.pt"
_EXTRA = "extra.pt"


class LoraSettings(BaseModel):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # "all-linear": every linear layer but the output head, peft's recommended default.
    target_modules: str | list[str] = "all-linear"


def resolve_base(base: str | Path | None) -> Path:
    if base is None or str(base) in ("", "embedded"):
        from agent.model_files import default_model_dir

        return default_model_dir()
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


def load_policy(base: str | Path | None, lora: LoraSettings | None = None):
    """-> (model, tokenizer). Float32: the trainers run on CPU, where half precision is slow
    and loses the small log-prob differences DPO and PPO work with."""
    from transformers import AutoModelForCausalLM

    path = resolve_base(base)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model from {path}: {exc}") from exc
    tokenizer = load_tokenizer(path)
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def apply_lora(model, settings: LoraSettings):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


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


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(
    out_dir: str | Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    out_dir = Path(out_dir)
    final = out_dir / CHECKPOINT_DIR
    tmp = out_dir / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(trainable_state(module), tmp / _TRAINABLE)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / _OPTIMIZER)
    if extra:
        torch.save(extra, tmp / _EXTRA)
    (tmp / _STATE).write_text(json.dumps(state, indent=2, default=str))
    old = out_dir / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(out_dir: str | Path) -> bool:
    return (Path(out_dir) / CHECKPOINT_DIR / _STATE).is_file()


def load_checkpoint(
    out_dir: str | Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore trainable parameters (and optimizer) in place -> (trainer state, extra)."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not (folder / _STATE).is_file():
        raise RankactError(f"nothing to resume: no checkpoint in {out_dir}")
    saved = torch.load(folder / _TRAINABLE, map_location="cpu", weights_only=True)
    params = dict(module.named_parameters())
    missing = [name for name in saved if name not in params]
    if missing:
        raise RankactError(
            f"checkpoint in {out_dir} does not match this model ({len(missing)} unknown parameters, "
            f"e.g. {missing[0]}); resume with the same --base and --lora settings"
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    if optimizer is not None and (folder / _OPTIMIZER).is_file():
        optimizer.load_state_dict(torch.load(folder / _OPTIMIZER, map_location="cpu", weights_only=True))
    extra = {}
    if (folder / _EXTRA).is_file():
        extra = torch.load(folder / _EXTRA, map_location="cpu", weights_only=False)
    return json.loads((folder / _STATE).read_text()), extra
