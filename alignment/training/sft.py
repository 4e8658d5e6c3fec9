"""Best-of-K SFT: a warm start before DPO or PPO. For each question, train on its top-ranked
trajectories (those never on the rejected side of a pair, i.e. the best tie group) with the
negative log-likelihood of their trainable tokens only: the model learns to write what the
best trajectory's model wrote, never to predict tool observations or the prompt, nor a step an
annotator flagged as bad (it stays context).

Call from Python: `train_sft(SFTConfig(out_dir=..., pairs=...))`, or pass `trajectories=`.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.pair_source import load_pair_source
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.losses import masked_nll
from rankact.alignment.training.monitors import DriftProbe, drift_probe
from rankact.alignment.training.offline import OfflineTrainer, StepLoss
from rankact.alignment.training.runtime import TrainResult
from rankact.alignment.training.sft_config import SFTConfig
from rankact.alignment.training.tokenize import (
    Encoded,
    collate,
    encode_text,
    encode_trajectory,
    require_exact_ids,
    without_steps,
)

log = logging.getLogger(__name__)
__all__ = ["SFTConfig", "SFTTrainer", "best_of_pairs", "encode_best", "flagged_steps", "train_sft"]


def flagged_steps(pairs: list[PreferencePair | TextPair]) -> dict[str, set[int]]:
    """Trajectory id -> the steps annotators flagged in it, over every pair."""
    flagged: dict[str, set[int]] = defaultdict(set)
    for pair in pairs:
        if isinstance(pair, PreferencePair):
            flagged[pair.chosen.id].update(pair.chosen_flagged_steps)
            flagged[pair.rejected.id].update(pair.rejected_flagged_steps)
    return {k: v for k, v in flagged.items() if v}


def best_of_pairs(pairs: list[PreferencePair | TextPair]) -> list[Trajectory | tuple[str, str]]:
    """Per question, the responses that are chosen somewhere and rejected nowhere (the top tie
    group of its rankings). Trajectories for PreferencePairs, (prompt, response) for text pairs."""
    chosen: dict[str, dict[str, object]] = defaultdict(dict)
    rejected: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        if isinstance(pair, PreferencePair):
            group = pair.question_id
            chosen[group][pair.chosen.id] = pair.chosen
            rejected[group].add(pair.rejected.id)
        else:
            group = pair.group or pair.prompt
            chosen[group][pair.chosen] = (pair.prompt, pair.chosen)
            rejected[group].add(pair.rejected)
    best = []
    for group, candidates in chosen.items():
        best.extend(item for key, item in candidates.items() if key not in rejected[group])
    return best


def encode_best(items, tokenizer, max_length: int, flagged: dict[str, set[int]] | None = None) -> list[Encoded]:
    """Encoded samples; a flagged step of a top-ranked trajectory stays context, never imitated."""
    encoded = []
    for item in items:
        if isinstance(item, Trajectory):
            sample = encode_trajectory(item, tokenizer, max_length)
            steps = (flagged or {}).get(item.id)
            encoded.append(without_steps(sample, steps) if steps else sample)
        else:
            prompt, response = item
            encoded.append(encode_text(prompt, response, tokenizer, max_length))
    kept = [e for e in encoded if e.n_trainable]
    if not kept:
        raise NoTrainingSignal("no usable trajectories: none of the top-ranked ones has generated tokens")
    return kept


class SFTTrainer(OfflineTrainer):
    """Best-of-K SFT on the shared offline loop: the data are the top-ranked samples, the loss
    their NLL; the drift probe watches KL to the starting policy."""

    name = "SFT"
    plot_keys = ("loss", "grad_norm", "kl", "entropy", "replay_loss")

    def __init__(self, config: SFTConfig, trajectories: list[Trajectory] | None = None, accelerator=None,
                 extra: Sequence[Trajectory] = ()):
        super().__init__(config, accelerator)
        self.trajectories, self.extra = trajectories, extra
        self.flagged: dict[str, set[int]] | None = None
        self.samples: list[Encoded] = []
        self.probe: DriftProbe | None = None

    def load(self) -> None:
        trajectories = self.trajectories
        if trajectories is None:
            pairs = load_pair_source(self.config.pairs, self.config.db)
            trajectories, self.flagged = best_of_pairs(pairs), flagged_steps(pairs)
        self.trajectories = [*trajectories, *self.extra]
        require_exact_ids((t for t in self.trajectories if isinstance(t, Trajectory)), self.config.retokenize)

    def encode(self, tokenizer) -> int:
        self.samples = encode_best(self.trajectories, tokenizer, self.config.max_length, self.flagged)
        return len(self.samples)

    def data_key(self) -> dict:
        return {"samples": len(self.samples)}

    def before_training(self, model, resuming: bool) -> None:
        self.probe = drift_probe(self.config, self.samples, model, self.pad_id, self.run, resuming)

    def step(self, model, indices: list[int]) -> StepLoss:
        batch = collate([self.samples[i] for i in indices], self.pad_id).to(self.run.device)
        # NLL per trainable token; only trainable positions are projected onto the vocabulary.
        mask = batch.trainable_mask
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, mask,
                                 chunk_size=self.config.logprob_chunk)
        nll = masked_nll(logp, mask)
        return StepLoss(nll, {"loss": nll.detach()}, int(batch.attention_mask.sum()), {"tokens": int(mask.sum())})

    def observe(self, step: int, last: bool, model) -> dict[str, float]:
        return self.probe.observe(step, last, model)

    def should_stop(self, metrics: dict[str, float]) -> bool:
        return self.probe.stop

    def metadata(self, steps: int) -> dict:
        return {"trainer": "sft", "steps": steps, "samples": len(self.samples),
                "config": self.config.model_dump(mode="json")}


def train_sft(config: SFTConfig, trajectories: list[Trajectory] | None = None, accelerator=None,
              extra: Sequence[Trajectory] = ()) -> TrainResult:
    """`extra`: trajectories trained on beside the ranked ones, e.g. demonstrations of questions
    nothing was sampled for (so nothing ranked them)."""
    return SFTTrainer(config, trajectories, accelerator, extra).train()
