"""The one offline step loop SFT, DPO and GRPO share: data fixed before training, one
optimizer step per seeded global batch. A trainer subclasses `OfflineTrainer` and supplies its
data (`load`, `encode`, `data_key`), anything it computes before the first update
(`before_training`: reference log-probs, the drift probe) and its loss (`step`); the prologue
(accelerator, seeding, policy and optimizer, resume, budget, progress) and the loop
(batch -> loss + replay -> update -> metrics -> checkpoint -> saved policy) live here once,
on top of `runtime.TrainingRun`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from rankact.alignment.training.policy import load_trainable, save_policy
from rankact.alignment.training.replay import ReplayTerm
from rankact.alignment.training.runtime import (
    TrainingRun,
    TrainResult,
    local_share,
    planned_steps,
    step_indices,
)
from rankact.alignment.training.tokenize import pad_token_id


@dataclass
class StepLoss:
    """What a trainer's loss gives the loop for one batch."""

    loss: torch.Tensor  # the trainer's loss, to backpropagate (replay is added by the loop)
    stats: dict[str, torch.Tensor]  # metric -> local scalar, averaged over processes; "loss" first
    tokens: int  # tokens forwarded on this process
    record: dict[str, Any] = field(default_factory=dict)  # extra metrics.jsonl fields, not averaged


class OfflineTrainer:
    """One run of an offline policy trainer: `Trainer(config, ...).train()`."""

    name: ClassVar[str]  # "SFT": the progress bar and the logger
    plot_keys: ClassVar[tuple[str, ...]]  # metrics.png panels
    postfix: ClassVar[dict[str, str]] = {"loss": "loss"}  # progress-bar field -> metric

    def __init__(self, config, accelerator=None):
        self.config = config
        # First: the output folder and the seeds exist before any data is read (as every trainer did).
        self.run = TrainingRun(config, self.name, accelerator=accelerator)
        self.pad_id = 0

    # ---- what a trainer supplies ------------------------------------------------------
    def load(self) -> None:
        """Read and check the data (before the model loads, so a bad input fails fast)."""

    def encode(self, tokenizer) -> int:
        """Encode the data with the policy's tokenizer; returns how many items a step draws from."""
        raise NotImplementedError

    def data_key(self) -> dict[str, Any]:
        """What identifies the data in the run key a checkpoint must match to resume."""
        raise NotImplementedError

    def before_training(self, model, resuming: bool) -> None:
        """Reference log-probs and monitors, on the unwrapped starting policy (before `prepare`)."""

    def step(self, model, indices: list[int]) -> StepLoss:
        raise NotImplementedError

    def observe(self, step: int, last: bool, model) -> dict[str, float]:
        """Monitor figures logged with this step (the unwrapped model)."""
        return {}

    def should_stop(self, metrics: dict[str, float]) -> bool:
        """Stop (and save) after this step, e.g. a KL budget passed with its stop set."""
        return False

    def metadata(self, steps: int) -> dict[str, Any]:
        """What `rankact_policy.json` records beside the saved policy."""
        return {"trainer": self.name.lower(), "steps": steps, "config": self.config.model_dump(mode="json")}

    def notes(self) -> dict[str, Any]:
        return {}

    # ---- the loop ---------------------------------------------------------------------
    def train(self) -> TrainResult:
        config, run = self.config, self.run
        self.load()
        replay = ReplayTerm.load(config, config.max_length, config.seed)  # a bad file fails before the model loads
        model, tokenizer, params, optimizer = load_trainable(config)
        items = self.encode(tokenizer)
        self.pad_id = pad_id = pad_token_id(tokenizer)
        planned, total = planned_steps(items, config.batch_size, config.epochs, config.max_steps)
        run_key = {**self.data_key(), "batch_size": config.batch_size, "seed": config.seed,
                   "replay": len(replay.samples) if replay else 0}
        state = run.resume(model, optimizer, run_key)
        model.to(run.device)
        self.before_training(model, bool(state))
        model.train()
        model, optimizer = run.accelerator.prepare(model, optimizer)

        run.start(total, initial=state.get("step", 0))
        step, last, tokens = state.get("step", 0), {}, 0
        while step < total and not run.over_budget():
            indices = local_share(step_indices(step, items, config.batch_size, config.seed), run.rank, run.world)
            out = self.step(model, indices)
            replayed = replay.loss(model, step, pad_id, run.device, config.logprob_chunk) if replay else torch.zeros(())
            grad_norm = run.update(out.loss + replayed, optimizer, params, config.max_grad_norm)
            step += 1
            tokens += out.tokens
            # One collective for every figure: the trainer's, then the gradient norm and replay.
            local = torch.stack([*out.stats.values(), grad_norm, replayed.detach()])
            values = run.accelerator.reduce(local, "mean").tolist()
            last = dict(zip([*out.stats, "grad_norm", "replay_loss"], values, strict=True))
            if not replay:
                del last["replay_loss"]
            last.update(self.observe(step, step == total, run.accelerator.unwrap_model(model)))
            run.log({"step": step, **last, **out.record}, **{k: last[m] for k, m in self.postfix.items()})
            if self.should_stop(last):
                break
            if step % config.save_every == 0 and step < total:
                run.save(model, optimizer, {"step": step})
        run.save(model, optimizer, {"step": step})
        unwrapped = run.accelerator.unwrap_model(model)
        run.finish(list(self.plot_keys), save=lambda: save_policy(unwrapped, tokenizer, config.out_dir,
                                                            self.metadata(step)))
        result = run.result(step, step < planned, last, tokens=tokens * run.world)
        result.notes.update(self.notes())
        return result
