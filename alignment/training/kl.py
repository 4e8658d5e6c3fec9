"""KL to the frozen reference: per-token estimators (k1, k3), and the controllers of its
coefficient β (Ziegler et al. 2019): fixed β, or adaptive β that moves the measured KL toward
a target."""
from __future__ import annotations

import torch
from pydantic import BaseModel


class FixedKL(BaseModel):
    value: float

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKL(BaseModel):
    """β ← β·(1 + clip(KL/target - 1, ±0.2)·n/horizon): proportional control, clipped so one
    noisy batch cannot swing β by more than 20 % of a horizon's worth."""

    value: float
    target: float
    horizon: int = 10_000

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value = self.value * (1.0 + error * n_steps / self.horizon)
        return self.value


def make_kl_controller(init: float, target: float | None, horizon: int = 10_000) -> FixedKL | AdaptiveKL:
    return FixedKL(value=init) if target is None else AdaptiveKL(value=init, target=target, horizon=horizon)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖ref) estimate log π - log ref on sampled tokens: unbiased, can be
    negative per token. Used as the per-token reward penalty (as in InstructGPT)."""
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 = r - 1 - log r with r = ref/π: unbiased, always >= 0, low variance.
    Reported as the KL metric (and what the adaptive controller tracks)."""
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio
