"""Checkpoints for resume, the same for every trainer: only what resume needs.

A checkpoint folder (`<out>/checkpoint/`) holds the trainable parameters (LoRA adapters
only, when used), the optimizer and LR-scheduler state, the random number generators and a
JSON trainer state (the step, and the run key that says which run it belongs to). It is
written to a temp folder and renamed, so an interrupted save never leaves a half checkpoint
that resume would trust. Everything loads with `weights_only=True` (no pickled objects).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rankact.agent.errors import RankactError

CHECKPOINT_DIR = "checkpoint"
_STATE = "state.json"
_TRAINABLE = "trainable.pt"
_OPTIMIZER = "optimizer.pt"
_SCHEDULER = "scheduler.pt"
_RNG = "rng.pt"


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: str | Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    scheduler: Any = None,
) -> Path:
    out_dir = Path(out_dir)
    final = out_dir / CHECKPOINT_DIR
    tmp = out_dir / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(trainable_state(module), tmp / _TRAINABLE)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / _OPTIMIZER)
    if scheduler is not None:
        torch.save(scheduler.state_dict(), tmp / _SCHEDULER)
    torch.save(rng_state(), tmp / _RNG)
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
    scheduler: Any = None,
) -> dict[str, Any]:
    """Restore trainable parameters, optimizer, scheduler and RNGs in place -> the trainer state."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not (folder / _STATE).is_file():
        raise RankactError(f"nothing to resume: no checkpoint in {out_dir}")
    saved = torch.load(folder / _TRAINABLE, map_location="cpu", weights_only=True)
    params = dict(module.named_parameters())
    unknown = [name for name in saved if name not in params]
    missing = [name for name, p in params.items() if p.requires_grad and name not in saved]
    if unknown or missing:
        example = (unknown or missing)[0]
        raise RankactError(
            f"checkpoint in {out_dir} does not match this model ({len(unknown)} unknown and {len(missing)} "
            f"missing parameters, e.g. {example}); resume with the same --base and --lora settings"
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    if optimizer is not None and (folder / _OPTIMIZER).is_file():
        optimizer.load_state_dict(torch.load(folder / _OPTIMIZER, map_location="cpu", weights_only=True))
    if scheduler is not None and (folder / _SCHEDULER).is_file():
        scheduler.load_state_dict(torch.load(folder / _SCHEDULER, map_location="cpu", weights_only=True))
    if (folder / _RNG).is_file():
        set_rng_state(torch.load(folder / _RNG, map_location="cpu", weights_only=True))
    return json.loads((folder / _STATE).read_text())
