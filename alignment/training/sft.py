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
from dataclasses import replace
from typing import ClassVar

import torch

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.feedback.preferences.pair_source import load_pair_source
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.config import OfflineTrainConfig
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.masked import masked_mean
from rankact.alignment.training.monitors import drift_probe
from rankact.alignment.training.policy import load_trainable, save_policy
from rankact.alignment.training.replay import ReplayTerm
from rankact.alignment.training.runtime import (
    TrainingRun,
    TrainResult,
    local_share,
    planned_steps,
    step_indices,
)
from rankact.alignment.training.tokenize import (
    Encoded,
    collate,
    encode_text,
    encode_trajectory,
    pad_token_id,
    require_exact_ids,
)

log = logging.getLogger(__name__)


class SFTConfig(OfflineTrainConfig):
    DEFAULT_LR: ClassVar[tuple[float, float]] = (2e-4, 2e-5)


def flagged_steps(pairs: list[PreferencePair | TextPair]) -> dict[str, set[int]]:
    """Trajectory id -> the steps annotators flagged in it, over every pair."""
    flagged: dict[str, set[int]] = defaultdict(set)
    for pair in pairs:
        if isinstance(pair, PreferencePair):
            flagged[pair.chosen.id].update(pair.chosen_flagged_steps)
            flagged[pair.rejected.id].update(pair.rejected_flagged_steps)
    return {k: v for k, v in flagged.items() if v}


def without_steps(encoded: Encoded, steps: set[int]) -> Encoded:
    """The same sequence with the tokens of `steps` made untrainable (context only)."""
    trainable = [t and s not in steps for t, s in zip(encoded.trainable, encoded.steps, strict=True)]
    return replace(encoded, trainable=trainable)


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


def train_sft(config: SFTConfig, trajectories: list[Trajectory] | None = None, accelerator=None,
              extra: Sequence[Trajectory] = ()) -> TrainResult:
    """`extra`: trajectories trained on beside the ranked ones, e.g. demonstrations of questions
    nothing was sampled for (so nothing ranked them)."""
    run = TrainingRun(config, "SFT", accelerator=accelerator)
    flagged = None
    if trajectories is None:
        pairs = load_pair_source(config.pairs, config.db)
        trajectories, flagged = best_of_pairs(pairs), flagged_steps(pairs)
    trajectories = [*trajectories, *extra]
    require_exact_ids((t for t in trajectories if isinstance(t, Trajectory)), config.retokenize)
    replay = ReplayTerm.load(config, config.max_length, config.seed)  # a bad file fails before the model loads
    model, tokenizer, params, optimizer = load_trainable(config)
    samples = encode_best(trajectories, tokenizer, config.max_length, flagged)
    pad_id = pad_token_id(tokenizer)
    planned, total = planned_steps(len(samples), config.batch_size, config.epochs, config.max_steps)
    run_key = {"samples": len(samples), "batch_size": config.batch_size, "seed": config.seed,
               "replay": len(replay.samples) if replay else 0}
    state = run.resume(model, optimizer, run_key)
    model.to(run.device)
    probe = drift_probe(config, samples, model, pad_id, run, bool(state))
    model.train()
    model, optimizer = run.accelerator.prepare(model, optimizer)

    run.start(total, initial=state.get("step", 0))
    step, last, tokens = state.get("step", 0), {}, 0
    while step < total and not run.over_budget():
        indices = local_share(step_indices(step, len(samples), config.batch_size, config.seed), run.rank, run.world)
        batch = collate([samples[i] for i in indices], pad_id).to(run.device)
        # NLL per trainable token; only trainable positions are projected onto the vocabulary.
        mask = batch.trainable_mask
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, mask, chunk_size=config.logprob_chunk)
        nll = -masked_mean(logp, mask)
        replayed = replay.loss(model, step, pad_id, run.device, config.logprob_chunk) if replay else torch.zeros(())
        grad_norm = run.update(nll + replayed, optimizer, params, config.max_grad_norm)
        step += 1
        tokens += int(batch.attention_mask.sum())
        stats = run.accelerator.reduce(torch.stack([nll.detach(), grad_norm, replayed.detach()]), "mean").tolist()
        last = {"loss": stats[0], "grad_norm": stats[1]}
        if replay:
            last["replay_loss"] = stats[2]
        last.update(probe.observe(step, step == total, run.accelerator.unwrap_model(model)))
        run.log({"step": step, **last, "tokens": int(mask.sum())}, loss=last["loss"])
        if probe.stop:
            break
        if step % config.save_every == 0 and step < total:
            run.save(model, optimizer, {"step": step})
    run.save(model, optimizer, {"step": step})
    unwrapped = run.accelerator.unwrap_model(model)
    run.finish(["loss", "grad_norm", "kl", "entropy", "replay_loss"], save=lambda: save_policy(
        unwrapped, tokenizer, config.out_dir,
        {"trainer": "sft", "steps": step, "samples": len(samples), "config": config.model_dump(mode="json")}))
    return run.result(step, step < planned, last, tokens=tokens * run.world)
