"""The one training runtime: what every trainer (reward model, SFT, DPO, PPO) needs around
its loop. `TrainingRun` holds it together: the output folder, seeding, an
`accelerate.Accelerator`, a wall-clock budget all processes agree on, a progress bar on the
main process, metrics as JSONL plus a PNG plot, checkpoints that only resume the same run,
and the `TrainResult` every trainer returns."""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from rankact.agent.errors import RankactError
from rankact.alignment.training.checkpoint import (
    CHECKPOINT_DIR,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


class TrainResult(BaseModel):
    out_dir: Path
    steps: int  # optimizer steps (PPO: iterations) done, over the whole run including resumed ones
    stopped_early: bool  # the budget or --max-steps ended it before the planned steps
    seconds: float = 0.0  # this process's training time (resumed runs: since the resume)
    tokens: int = 0  # tokens forwarded in training, all processes
    final_metrics: dict[str, float] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)  # trainer-specific facts (pairs, truncation, ...)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def mixed_precision_mode(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"  # fp32 on CPU: bf16 autocast there is slow and lossy


def make_accelerator(mixed_precision: str = "no", grad_accum: int = 1):
    """One Accelerator per run. Under `accelerate launch` (or torchrun) it picks up the process
    group; on a plain `python` run it is a single process. Without a GPU it is told so, so
    that N launched processes run on CPU over gloo instead of N copies that each think they
    are alone."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision_mode(mixed_precision),
                       gradient_accumulation_steps=grad_accum)


def clip_gradients(accelerator, params, max_norm: float | None) -> torch.Tensor:
    """Clip the gradient norm to `max_norm` (None: only measure it); returns the norm before
    clipping, as a tensor on the accelerator's device (so processes can average it)."""
    norm = accelerator.clip_grad_norm_(params, max_norm if max_norm is not None else float("inf"))
    if norm is None:  # DeepSpeed clips inside its own step (gradient_clipping) and may not report the norm
        return torch.tensor(float("nan"), device=accelerator.device)
    return torch.as_tensor(float(norm), device=accelerator.device)


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Budget:
    """`--max-minutes`: trainers stop at the next step boundary once it is spent, then save."""

    def __init__(self, max_minutes: float | None):
        self.deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        self.start = time.monotonic()

    def exceeded(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.start


class MetricsLog:
    """Appends one JSON object per step/iteration to `metrics.jsonl` (resume appends too)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        # NaN (e.g. success with no gold answers) is not JSON: write null instead.
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in clean.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def plot_metrics(records: list[dict[str, Any]], keys: list[str], path: str | Path, x_key: str) -> Path | None:
    """One small panel per metric against `x_key`; headless (Agg) so it works on servers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in records)]
    if not records or not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        points = [(r[x_key], r[key]) for r in records if isinstance(r.get(key), (int, float)) and x_key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_title(key)
        ax.set_xlabel(x_key)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, dynamic_ncols=True)


def planned_steps(items: int, batch_size: int, epochs: int, max_steps: int | None) -> tuple[int, int]:
    """(planned, total): optimizer steps for `epochs` passes over `items`, and the steps this
    run takes (--max-steps caps it; stopping before `planned` counts as stopping early)."""
    planned = epochs * math.ceil(items / batch_size)
    return planned, min(planned, max_steps) if max_steps else planned


def step_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """The global batch of a step: a seeded permutation per epoch, so every process agrees on
    it and resume continues with exactly the batches it had not seen."""
    per_epoch = math.ceil(n / batch_size)
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return order[offset * batch_size : (offset + 1) * batch_size]


def local_share(indices: list[int], rank: int, world: int) -> list[int]:
    share = indices[rank::world]
    return share or indices[:1]  # a short last batch: repeat one pair rather than idle (DDP needs a forward)


class TrainingRun:
    """Everything around one trainer's loop. A trainer reads as:

        run = TrainingRun(config, "DPO")
        state = run.resume(model, optimizer, run_key)      # {} on a fresh run
        run.start(total, initial=state.get("step", 0))
        while step < total and not run.over_budget():
            ... one optimizer step ...
            run.log({"step": step, "loss": ...}, loss=...)
            if step % config.save_every == 0: run.save(model, optimizer, {"step": step})
        run.save(model, optimizer, {"step": step})
        run.finish(plot_keys, save=lambda: save_policy(...))
        return run.result(step, stopped_early, last)
    """

    def __init__(self, config: Any, name: str, *, accelerator=None, grad_accum: int = 1,
                 seed_per_process: bool = False, log: Callable[[str], None] | None = None):
        self.config = config
        self.name = name
        self.accelerator = accelerator or make_accelerator(config.mixed_precision, grad_accum)
        self.out = Path(config.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        # Rollouts sample on every process: each needs its own stream (PPO); data order and
        # initialisation must agree across processes (everything else).
        seed_everything(config.seed + (self.rank if seed_per_process else 0))
        self.budget = Budget(config.max_minutes)
        self.metrics = MetricsLog(self.out / "metrics.jsonl", enabled=self.is_main)
        self._log = log
        self._run_key: dict[str, Any] = {}
        self.bar = None

    # ---- processes -----------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def device(self):
        return self.accelerator.device

    def say(self, message: str) -> None:
        """A line for the user, from the main process only (through `log`, else the logging module)."""
        if not self.is_main:
            return
        if self._log is not None:
            self._log(message)
        else:
            import logging

            logging.getLogger(f"rankact.{self.name.lower()}").info(message)

    # ---- resume and checkpoints ------------------------------------------------------
    def resume(self, module: torch.nn.Module, optimizer=None, run_key: dict[str, Any] | None = None,
               scheduler: Any = None) -> dict[str, Any]:
        """With `resume` set, restore the checkpoint in the output folder in place and return its
        trainer state; {} on a fresh run. A checkpoint whose run key (what fixes the data
        position and schedule) differs from this run's is refused, never silently mixed."""
        self._run_key = json.loads(json.dumps(run_key or {}, default=str))
        if not self.config.resume:
            return {}
        if not has_checkpoint(self.out):
            self.say(f"--resume: no checkpoint in {self.out}; starting fresh")
            return {}
        state = load_checkpoint(self.out, module, optimizer, scheduler)
        saved = state.get("run", {})
        changed = {k: (saved.get(k), v) for k, v in self._run_key.items() if saved.get(k) != v}
        if changed:
            raise RankactError(f"{self.out / CHECKPOINT_DIR} was made by a different run (checkpoint vs now: "
                               f"{changed}); resume with the same data and settings, or use a new output folder")
        self.say(f"resumed from {self.out / CHECKPOINT_DIR} ({ {k: v for k, v in state.items() if k != 'run'} })")
        return state

    def save(self, module: torch.nn.Module, optimizer, state: dict[str, Any], scheduler: Any = None) -> None:
        """A checkpoint from the main process (all processes wait for it)."""
        self.accelerator.wait_for_everyone()
        if self.is_main:
            save_checkpoint(self.out, self.accelerator.unwrap_model(module), optimizer,
                            {**state, "run": self._run_key}, scheduler)

    # ---- updates -----------------------------------------------------------------------
    def update(self, loss: torch.Tensor, optimizer, params, max_grad_norm: float | None) -> torch.Tensor:
        """One optimizer step on `loss`: backward, clip the gradient norm, step, clear the
        gradients. Returns the norm before clipping (see `clip_gradients`)."""
        self.accelerator.backward(loss)
        grad_norm = clip_gradients(self.accelerator, params, max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # ---- progress ----------------------------------------------------------------------
    def start(self, total: int, initial: int = 0) -> None:
        self.bar = progress(total, self.name, self.config.show_progress and self.is_main, initial=initial)

    def over_budget(self) -> bool:
        """True once --max-minutes is spent, decided by all processes together: one process
        stopping alone would leave the others waiting forever in the next collective."""
        if self.config.max_minutes is None:
            return False
        late = torch.tensor(int(self.budget.exceeded()), device=self.device)
        return bool(self.accelerator.reduce(late, "max").item())

    def log(self, record: dict[str, Any], **postfix: float) -> None:
        """One metrics.jsonl line (main process) and one tick of the progress bar."""
        self.metrics.write({**record, "seconds": round(self.budget.elapsed(), 2)})
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in postfix.items()})

    def finish(self, plot_keys: list[str], x_key: str = "step", save: Callable[[], None] | None = None) -> None:
        """Close the bar; on the main process save the trained model and plot the metrics."""
        if self.bar is not None:
            self.bar.close()
        self.accelerator.wait_for_everyone()
        if self.is_main:
            if save is not None:
                save()
            plot_metrics(self.metrics.read(), plot_keys, self.out / "metrics.png", x_key)
        self.accelerator.wait_for_everyone()

    def result(self, steps: int, stopped_early: bool, final_metrics: dict[str, float] | None = None,
               tokens: int = 0, notes: dict[str, Any] | None = None) -> TrainResult:
        return TrainResult(out_dir=self.out, steps=steps, stopped_early=stopped_early, seconds=self.budget.elapsed(),
                           tokens=tokens, final_metrics=final_metrics or {}, notes=notes or {})
