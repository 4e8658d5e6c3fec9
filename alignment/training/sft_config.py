"""`SFTConfig`: the settings of best-of-K SFT (`sft.train_sft`). Pydantic only, no torch, so the
CLI can build its options without loading the trainer."""
from __future__ import annotations

from typing import ClassVar

from rankact.alignment.training.config import OfflineTrainConfig


class SFTConfig(OfflineTrainConfig):
    DEFAULT_LR: ClassVar[tuple[float, float]] = (2e-4, 2e-5)
