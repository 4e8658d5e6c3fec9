"""KL coefficient controllers (Ziegler et al. 2019): fixed β, or adaptive β that moves the
measured KL to the policy's reference toward a target."""
from __future__ import annotations

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
