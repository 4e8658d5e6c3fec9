"""`DPOConfig`: the settings of DPO (`dpo.train_dpo`), TRL style beside its trainer. Pydantic
only, no torch, so the CLI can build its options without loading the trainer."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rankact.alignment.training.config import OfflineTrainConfig

LossType = Literal["sigmoid", "ipo"]  # the preference losses of `losses.dpo_loss`


class DPOConfig(OfflineTrainConfig):
    beta: float = Field(0.1, gt=0, description="strength of the pull to the reference")
    loss_type: LossType = Field("sigmoid", description="sigmoid (DPO) or ipo")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: assumed label-flip rate")

    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)
