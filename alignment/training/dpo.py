"""DPO from rankings (Rafailov et al. 2023), TRL style: `DPOConfig` beside `train_dpo`.

loss = -log σ(β[(log π(c) - log ref(c)) - (log π(r) - log ref(r))]), where each log π is the
sum over the trajectory's trainable tokens only (generated, not forced): the model is never
pushed toward or away from tool observations or prompt text it did not write.

The reference is the starting policy. Its log-probs are computed once, before the first
update (the policy *is* the reference then, so no second model is loaded), cached in memory
and saved to `reference_logps.pt` in the output folder, so resume never recomputes them.

Call from Python: `train_dpo(DPOConfig(out_dir=..., pairs=...))` or pass `pairs=[...]`.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import torch

from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.pair_source import load_pair_source
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.config import DEFAULT_CHUNK_SIZE
from rankact.alignment.training.dpo_config import DPOConfig
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.losses import dpo_loss
from rankact.alignment.training.monitors import DriftProbe, drift_probe
from rankact.alignment.training.offline import OfflineTrainer, StepLoss
from rankact.alignment.training.policy import resolve_base
from rankact.alignment.training.reference import cached_reference, fingerprint
from rankact.alignment.training.runtime import TrainResult, progress
from rankact.alignment.training.tokenize import (
    Encoded,
    collate,
    encode_pair,
    require_exact_ids,
    without_steps,
)

log = logging.getLogger(__name__)
REFERENCE_FILE = "reference_logps.pt"
__all__ = ["DPOConfig", "DPOTrainer", "encode_pairs", "pair_logps", "reference_logps", "train_dpo"]


def encode_pairs(pairs, tokenizer, max_length: int) -> list[tuple[Encoded, Encoded]]:
    """Both sides of every pair. A step an annotator flagged in the chosen trajectory is left out
    of its log-ratio: DPO raises the chosen side, and a flagged step must never be raised (the
    rejected side keeps its flagged steps: lowering them is right)."""
    encoded = []
    for pair in pairs:
        chosen, rejected = encode_pair(pair, tokenizer, max_length)
        if isinstance(pair, PreferencePair) and pair.chosen_flagged_steps:
            chosen = without_steps(chosen, set(pair.chosen_flagged_steps))
        encoded.append((chosen, rejected))
    kept = [e for e in encoded if e[0].n_trainable and e[1].n_trainable]
    if len(kept) < len(encoded):
        log.warning("skipped %d pairs with no generated tokens on one side", len(encoded) - len(kept))
    if not kept:
        raise NoTrainingSignal("no usable pairs: every pair lacks generated tokens on one side")
    return kept


# --------------------------------------------------------------------------- log-probs


def pair_logps(model, encoded, indices, pad_id: int, device,
               chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed trainable-token log-probs of chosen and rejected for `indices`, one forward
    pass over both halves (DDP needs exactly one forward per backward)."""
    samples = [encoded[i][0] for i in indices] + [encoded[i][1] for i in indices]
    batch = collate(samples, pad_id).to(device)
    logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.trainable_mask,
                             chunk_size=chunk_size)
    sums = logp.sum(-1)
    n = len(indices)
    return sums[:n], sums[n:]


@torch.no_grad()
def reference_logps(model, encoded, pad_id: int, accelerator, batch_size: int = 2,
                    chunk_size: int | None = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """[N, 2] reference log-probs; each process scores its share, then all gather the lot."""
    model.eval()
    mine = list(range(accelerator.process_index, len(encoded), accelerator.num_processes))
    results: list[tuple[int, float, float]] = []
    bar = progress(len(mine), "reference log-probs", accelerator.is_main_process)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        chosen, rejected = pair_logps(model, encoded, chunk, pad_id, accelerator.device, chunk_size)
        results.extend(zip(chunk, chosen.tolist(), rejected.tolist(), strict=True))
        bar.update(len(chunk))
    bar.close()
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        results = gather_object(results)
    table = torch.zeros(len(encoded), 2)
    for index, chosen, rejected in results:
        table[index] = torch.tensor([chosen, rejected])
    model.train()
    return table


# --------------------------------------------------------------------------- training


class DPOTrainer(OfflineTrainer):
    """DPO on the shared offline loop: the data are encoded pairs with their cached reference
    log-probs, the loss `losses.dpo_loss`; the drift probe watches the chosen sides."""

    name = "DPO"
    plot_keys = ("loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "kl", "entropy", "replay_loss")
    postfix: ClassVar[dict[str, str]] = {"loss": "loss", "acc": "accuracy"}

    def __init__(self, config: DPOConfig, pairs: list[PreferencePair | TextPair] | None = None, accelerator=None):
        super().__init__(config, accelerator)
        self.pairs = pairs
        self.encoded: list[tuple[Encoded, Encoded]] = []
        self.digest = ""
        self.ref: torch.Tensor | None = None
        self.probe: DriftProbe | None = None

    def load(self) -> None:
        c = self.config
        self.pairs = self.pairs if self.pairs is not None else load_pair_source(c.pairs, c.db)
        require_exact_ids((t for p in self.pairs if isinstance(p, PreferencePair) for t in (p.chosen, p.rejected)),
                          c.retokenize)

    def encode(self, tokenizer) -> int:
        c = self.config
        self.encoded = encode_pairs(self.pairs, tokenizer, c.max_length)
        self.digest = fingerprint(resolve_base(c.base), c.max_length,
                                  ([ch.input_ids, ch.trainable, r.input_ids, r.trainable] for ch, r in self.encoded))
        return len(self.encoded)

    def data_key(self) -> dict:
        return {"pairs": self.digest[:16]}

    def before_training(self, model, resuming: bool) -> None:
        c, run = self.config, self.run
        self.ref = cached_reference(
            c.out_dir / REFERENCE_FILE, self.digest, model, c.base, resuming, run.device,
            lambda m: reference_logps(m, self.encoded, self.pad_id, run.accelerator, chunk_size=c.logprob_chunk),
            run.is_main)
        self.probe = drift_probe(c, [ch for ch, _ in self.encoded], model, self.pad_id, run, resuming)

    def step(self, model, indices: list[int]) -> StepLoss:
        c, device = self.config, self.run.device
        chosen, rejected = pair_logps(model, self.encoded, indices, self.pad_id, device, c.logprob_chunk)
        ref_pair = self.ref[indices].to(device)
        losses, chosen_r, rejected_r = dpo_loss(
            chosen, rejected, ref_pair[:, 0], ref_pair[:, 1], c.beta, c.loss_type, c.label_smoothing
        )
        loss = losses.mean()
        stats = {"loss": loss.detach(), "accuracy": (chosen_r > rejected_r).float().mean(),
                 "margin": (chosen_r - rejected_r).mean(), "chosen_reward": chosen_r.mean(),
                 "rejected_reward": rejected_r.mean()}
        tokens = sum(len(self.encoded[i][0]) + len(self.encoded[i][1]) for i in indices)
        return StepLoss(loss, stats, tokens)

    def observe(self, step: int, last: bool, model) -> dict[str, float]:
        return self.probe.observe(step, last, model)

    def should_stop(self, metrics: dict[str, float]) -> bool:
        return self.probe.stop


def train_dpo(config: DPOConfig, pairs: list[PreferencePair | TextPair] | None = None, accelerator=None) -> TrainResult:
    return DPOTrainer(config, pairs, accelerator).train()
