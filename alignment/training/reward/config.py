"""Configuration for reward-model training, with defaults that work on a 2-core CPU."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class RewardTrainConfig(BaseModel):
    base: str | None = None  # model folder; None = the embedded SmolLM2-135M
    out: Path
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    head_init_std: float | None = None  # None = 1/sqrt(hidden + 1) (Stiennon et al., 2020)
    max_length: int = Field(512, ge=8)
    batch_size: int = Field(8, ge=1, description="pairs per micro-batch; one prompt's pairs are never split")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    scheduler: str = "linear"  # any transformers.get_scheduler name
    max_steps: int | None = Field(None, ge=1)  # None = `epochs` passes over the data
    epochs: float = Field(1.0, gt=0)
    margin: float = 0.0
    center_coef: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    save_every: int = Field(50, ge=1, description="checkpoint every N optimizer steps")
    resume: bool = False
    max_minutes: float | None = None  # stop (after a checkpoint) when the budget is spent
    stop_after: int | None = None  # stop after this step as if interrupted (tests, budgets)
    norm_samples: int = Field(256, ge=2, description="responses scored for the normalization stats")
    mixed_precision: str = "auto"  # auto = bf16 on CUDA when supported, else fp32
    progress: bool = True
