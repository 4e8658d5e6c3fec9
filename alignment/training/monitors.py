"""Drift monitors for the policy trainers: KL to the reference and entropy, with a budget.

GRPO and PPO compute KL and entropy on every batch as part of their loss. SFT and DPO do not
need a reference to learn, yet they drift too (a 135M model collapses quickly on a few
dozen trajectories), so they measure it on a fixed probe: up to `size` of their training
samples, scored without gradients every `every` steps. The samples were drawn from the
collecting policy, which is the reference, so the k3 estimate is KL(reference || policy)
per generated token, the same quantity rounds report as a round's KL.
"""
from __future__ import annotations

import logging

import torch

from rankact.alignment.training.kl import kl_k3
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.masked import masked_mean
from rankact.alignment.training.policy import resolve_base
from rankact.alignment.training.reference import cached_reference, fingerprint, sample_token_logps
from rankact.alignment.training.tokenize import Encoded, collate

PROBE_FILE = "probe_reference_logps.pt"

log = logging.getLogger("rankact.training")


class KLBudget:
    """Warn once when the per-token KL passes `budget`; `over()` says whether to stop."""

    def __init__(self, budget: float | None, stop: bool = False, hint: str = "lower --lr"):
        self.budget, self.stop, self.hint = budget, stop, hint
        self.passed = False

    def over(self, kl: float) -> bool:
        if self.budget is None or kl <= self.budget:
            return False
        if not self.passed:
            log.warning("KL to the reference is %.3f per token, over the budget %.3f: the policy is drifting; %s",
                        kl, self.budget, self.hint)
            self.passed = True
        return self.stop


class DriftProbe:
    """KL(reference || policy) and entropy on a fixed set of training samples, the policy's own.
    Demonstrations are left out, always: k3 estimates the KL only on tokens the reference
    sampled, and written tokens lie where it would not go (measured on demonstrations alone, a
    32-step SFT read 8,920 per token), and moving the policy there is the point, not drift to
    warn about. With no sampled run there is nothing to measure, and the probe stays silent
    rather than raise a false alarm."""

    def __init__(self, samples: list[Encoded], pad_id: int, device, chunk_size: int | None, every: int,
                 budget: KLBudget | None = None, size: int = 16):
        self.samples = [s for s in samples if s.n_trainable and not s.meta.get("demonstration")][:size]
        self.pad_id, self.device, self.chunk_size, self.every = pad_id, device, chunk_size, every
        self.budget = budget or KLBudget(None)
        self.reference: list[torch.Tensor] | None = None
        self.stop = False

    def observe(self, step: int, last: bool, model) -> dict[str, float]:
        """The probe's figures when due (else {}); sets `stop` when the budget says so."""
        if not self.due(step, last):
            return {}
        figures = self.measure(model)
        self.stop = bool(figures) and self.budget.over(figures["kl"])
        return figures

    def due(self, step: int, last: bool) -> bool:
        return bool(self.samples) and self.reference is not None and (last or step % self.every == 0)

    @torch.no_grad()
    def measure(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        kl_sum = entropy_sum = count = 0.0
        for start in range(0, len(self.samples), 4):
            chunk = self.samples[start : start + 4]
            batch = collate(chunk, self.pad_id).to(self.device)
            mask = batch.trainable_mask
            logp, entropy = token_logprobs(model, batch.input_ids, batch.attention_mask, mask, with_entropy=True,
                                           chunk_size=self.chunk_size)
            ref = torch.zeros_like(logp)
            for row, ref_row in enumerate(self.reference[start : start + 4]):
                ref[row, : ref_row.numel()] = ref_row.to(ref.device)
            n = float(mask.sum())
            kl_sum += float(masked_mean(kl_k3(ref, logp), mask)) * n
            entropy_sum += float(masked_mean(entropy, mask)) * n
            count += n
        model.train(was_training)
        return {"kl": kl_sum / count, "entropy": entropy_sum / count} if count else {}


def drift_probe(config, samples: list[Encoded], model, pad_id: int, run, resuming: bool) -> DriftProbe:
    """The probe of an offline trainer (SFT, DPO), its reference log-probs computed (or loaded)
    before the first update: call it before `accelerator.prepare`."""
    probe = DriftProbe(samples, pad_id, run.device, config.logprob_chunk, config.monitor_every,
                       KLBudget(config.kl_budget, config.stop_on_kl_budget, "lower --lr or --max-steps"))
    if probe.samples:
        digest = fingerprint(resolve_base(config.base), config.max_length,
                             ([s.input_ids, s.trainable] for s in probe.samples))
        probe.reference = cached_reference(
            config.out_dir / PROBE_FILE, digest, model, config.base, resuming, run.device,
            lambda m: sample_token_logps(m, probe.samples, pad_id, run.device, config.logprob_chunk), run.is_main)
    return probe
