"""What every trainer needs around its loop: an `accelerate.Accelerator`, a wall-clock
budget, a progress bar on the main process, and metrics as JSONL plus a PNG plot."""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch


def make_accelerator(cpu: bool | None = None):
    """One Accelerator per run. Under `accelerate launch` it picks up the process group;
    on a plain `python` run it is a single process. CPU is forced when no GPU is present."""
    from accelerate import Accelerator

    if cpu is None:
        cpu = not torch.cuda.is_available()
    return Accelerator(cpu=cpu)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass


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
