"""`GRPOConfig`: the settings of group-relative training (`grpo.train_grpo`). Pydantic only, no
torch, so the CLI can build its options without loading the trainer."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from rankact.alignment.feedback.preferences.groups import GroupSignal
from rankact.alignment.training.config import PolicyTrainConfig, ReplaySettings


class GRPOConfig(PolicyTrainConfig, ReplaySettings):
    db: str | None = Field(None, description="trajectory store URL: its rankings (or questions) are the groups")
    signal: GroupSignal = Field("ranking", description="group signal: ranking (people's or simulated ranks), "
                                                       "task (gold answers), reward (a reward model)")
    reward_model: Path | None = Field(None, description="reward model folder, for --signal reward")
    scale_advantages: bool = Field(True, description="divide advantages by the group's standard deviation")
    flag_penalty: float = Field(1.0, ge=0, description="negative advantage on the tokens of a flagged step")
    clip_range: float = Field(0.2, gt=0, description="policy ratio clip ε")
    kl_coef: float = Field(0.04, ge=0, description="β of the KL(π‖ref) term in the loss")
    kl_budget: float | None = Field(0.5, gt=0, description="warn when the per-token KL to the reference passes this")
    stop_on_kl_budget: bool = Field(False, description="stop (and save) when the KL budget is passed")
    batch_size: int = Field(4, ge=1, description="trajectories per optimizer step, over all processes")
    epochs: int = Field(2, ge=1, description="passes over the groups")
    max_steps: int | None = Field(None, ge=1, description="stop after N optimizer steps")

    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)
