"""Settings shared by the offline policy trainers (best-of-K SFT and DPO)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from alignment.training.policy import LoraSettings


class OfflineTrainConfig(BaseModel):
    out_dir: Path
    pairs: Path | None = None  # PreferencePair / TRL / HH JSONL (what `rankact feedback export` writes)
    db: str | None = None  # or a trajectory store URL: pairs derived from its rankings
    base: str | None = None  # model folder; None = the embedded model
    learning_rate: float | None = None  # default: DEFAULT_LR (LoRA, full) of the trainer
    batch_size: int = Field(2, ge=1)  # items per optimizer step, over all processes
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    max_length: int = Field(1024, ge=8)
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    lora: LoraSettings | None = None
    save_every: int = Field(50, ge=1)  # steps between checkpoints
    resume: bool = False
    seed: int = 0
    show_progress: bool = True

    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)  # (with LoRA, full fine-tuning)

    @property
    def lr(self) -> float:
        lora_lr, full_lr = self.DEFAULT_LR
        return self.learning_rate or (lora_lr if self.lora else full_lr)
