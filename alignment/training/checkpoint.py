"""Checkpoints for resume: only what resume needs, the trainable parameters (LoRA adapters
only, when used), optimizer state and a JSON trainer state. Written to a temp folder and
renamed, so an interrupted save never leaves a half checkpoint that resume would trust."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from agent.errors import RankactError

CHECKPOINT_DIR = "checkpoint"
POLICY_DIR = "policy"
_STATE = "state.json"
_TRAINABLE = "trainable.pt"
_OPTIMIZER = "optimizer.pt"
_EXTRA = "extra.pt"


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
