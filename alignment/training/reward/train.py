"""Bradley-Terry reward-model training with accelerate (one or several processes).

Read top to bottom: build the model, tokenize and group the pairs, then one optimizer step
at a time: `grad_accum` micro-batches per process, each a batch of whole groups. The batch
order is a pure function of (seed, epoch), so a checkpoint only needs the step number to
know its data position, and a resumed run sees exactly the batches an uninterrupted one would.
The loop's surroundings (seeding, checkpoints, budget, progress, metrics) are the shared
`rankact.alignment.training.runtime.TrainingRun`.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from rankact.agent.errors import RankactError
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.losses import bradley_terry_loss
from rankact.alignment.training.policy import enable_gradient_checkpointing
from rankact.alignment.training.reward.batching import (
    TokenizedPair,
    collate_pairs,
    group_pairs,
    make_batches,
    tokenize_pairs,
)
from rankact.alignment.training.reward.config import RewardTrainConfig
from rankact.alignment.training.reward.model import RewardModel
from rankact.alignment.training.runtime import TrainingRun, TrainResult, clip_gradients
from rankact.alignment.training.tokenize import collate, encode_prompt_completion


def train_reward(
    config: RewardTrainConfig, pairs: Sequence[PreferencePair | TextPair], log: Callable[[str], None] = print
) -> tuple[RewardModel | None, TrainResult]:
    """Train and save to config.out_dir; returns (the trained model, or None on non-main processes; result)."""
    from transformers import get_scheduler

    run = TrainingRun(config, "reward", grad_accum=config.grad_accum, log=log)
    accelerator = run.accelerator
    model = RewardModel.from_base(config.base, max_length=config.max_length, lora=config.lora,
                                  head_init_std=config.head_init_std)  # the head's init follows the seed
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model.lm)
    tokenized, truncation = tokenize_pairs(pairs, model.tokenizer, config.max_length)
    groups = group_pairs(tokenized)
    n_batches = len(make_batches(groups, config.batch_size, config.seed, 0))
    per_step = run.world * config.grad_accum  # micro-batches consumed per optimizer step, all processes
    max_steps = config.max_steps or max(1, int(config.epochs * n_batches / per_step))
    run.say(f"{len(tokenized)} pairs in {len(groups)} groups, {n_batches} batches, {run.world} process(es), "
            f"{max_steps} steps; truncation: {truncation.describe()}")
    if n_batches < run.world:
        raise RankactError(f"{n_batches} batches cannot feed {run.world} processes: use fewer processes or more data")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.scheduler, optimizer, num_warmup_steps=config.warmup_steps,
                              num_training_steps=max_steps)
    # What fixes the data position and the schedule: a checkpoint only resumes the same run.
    # (N processes x grad_accum 1 and 1 process x grad_accum N consume the same batches per step.)
    run_key = {"max_steps": max_steps, "pairs": len(tokenized), "batches": n_batches,
               "micro_batches_per_step": per_step, "batch_size": config.batch_size, "seed": config.seed}
    state = run.resume(model, optimizer, run_key, scheduler)
    start = state.get("step", 0)

    # The scheduler stays unwrapped: accelerate would step it once per process per step.
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    epoch_cache: dict[int, list[list[int]]] = {}

    def batch_at(index: int) -> list[int]:
        epoch, position = divmod(index, n_batches)  # the index-th micro-batch of the whole run
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = make_batches(groups, config.batch_size, config.seed, epoch)
        return epoch_cache[epoch][position]

    tokens = correct = seen = 0
    step, last, stopped_early = start, {}, False
    wrapped.train()
    run.start(max_steps, initial=start)
    while step < max_steps:
        step_loss = 0.0
        grad_norm = torch.zeros((), device=run.device)
        for k in range(config.grad_accum):
            index = step * per_step + k * run.world + run.rank
            batch = collate_pairs(tokenized, batch_at(index))
            with accelerator.accumulate(wrapped):
                loss, chosen, rejected = _forward(wrapped, batch, model.pad_id, run.device, config)
                accelerator.backward(loss)  # scaled by 1/grad_accum by accelerate
                if accelerator.sync_gradients:  # last micro-batch of the step
                    grad_norm = clip_gradients(accelerator, params, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
            step_loss += loss.item() / config.grad_accum
            correct += int((chosen > rejected).sum().item())
            seen += chosen.numel()
            tokens += batch.tokens
        step += 1
        last = {"loss": step_loss, "accuracy": correct / max(seen, 1), "grad_norm": float(grad_norm)}
        run.log({"step": step, **last, "lr": scheduler.get_last_lr()[0]}, loss=step_loss, acc=last["accuracy"])
        over_budget = run.over_budget()
        interrupted = config.stop_after is not None and step >= config.stop_after and step < max_steps
        if step % config.save_every == 0 or over_budget or interrupted:
            run.save(wrapped, optimizer.optimizer, {"step": step}, scheduler)
        if (over_budget or interrupted) and step < max_steps:
            stopped_early = True
            run.say(f"stopped at step {step}/{max_steps} ({'time budget' if over_budget else 'stop_after'}); "
                    "rerun with --resume to continue")
            break
    # Tokens and accuracy over all processes (each counted its own micro-batches).
    totals = accelerator.reduce(torch.tensor([tokens, correct, seen], device=run.device), "sum")
    tokens, correct, seen = (int(v) for v in totals.tolist())
    last["accuracy"] = correct / max(seen, 1)
    trained = accelerator.unwrap_model(wrapped)

    def save() -> None:
        # Stats even when stopped early: the saved model is usable as it is (PPO whitens with them).
        reference = _reference_sequences(tokenized, config.norm_samples, config.seed)
        trained.set_normalization(trained.score_ids(reference, batch_size=config.batch_size))
        run.say(f"normalization on {len(reference)} training responses: mean {trained.info.mean:.4f} "
                f"std {trained.info.std:.4f}")
        trained.save(config.out_dir)

    run.finish(["loss", "accuracy", "grad_norm", "lr"], save=save)
    notes = {"pairs": len(tokenized), "groups": len(groups), "truncation": vars(truncation)}
    result = run.result(step, stopped_early, last, tokens=tokens, notes=notes)
    return (trained if run.is_main else None), result


def _forward(wrapped, batch, pad_id: int, device, config: RewardTrainConfig):
    # Sequences are already encoded (and truncated) by `tokenize_pairs`: only padding is left.
    padded = collate([encode_prompt_completion([], s) for s in batch.sequences], pad_id)
    scores = wrapped(padded.input_ids.to(device), padded.attention_mask.to(device)).float()
    chosen = scores[torch.tensor(batch.chosen_rows, device=device)]
    rejected = scores[torch.tensor(batch.rejected_rows, device=device)]
    weights = torch.tensor(batch.weights, device=device)
    loss = bradley_terry_loss(chosen, rejected, config.margin, config.center_coef, weights)
    return loss, chosen.detach(), rejected.detach()


def _reference_sequences(pairs: Sequence[TokenizedPair], n: int, seed: int) -> list[list[int]]:
    """Up to n distinct training sequences (chosen and rejected), sampled with the seed."""
    unique = list(dict.fromkeys(tuple(s) for p in pairs for s in (p.chosen, p.rejected)))
    random.Random(seed).shuffle(unique)
    return [list(s) for s in unique[:n]]
