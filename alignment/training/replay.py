"""Replay: keep what the starting policy did outside the task it is trained on.

Training on rankings of one task moves a small model elsewhere too. Measured here: the
shipped adapter, trained on arithmetic runs only, refused 2 fewer of 50 AdvBench requests
than its base and, asked plainly for the capital of France, drifted into French words. So a
trainer can replay the starting policy's own sampled replies to plain requests from other DEV
sets (general questions, harmful requests) with an extra likelihood term beside its loss:

    loss = trainer loss + γ · NLL(replay batch)

InstructGPT's PPO-ptx mixes pretraining gradients into PPO the same way; here the text is the
starting policy's own replies, so the term pulls toward what the model already did on those
requests (self-distillation) and never teaches a new behaviour. Written by hand because no
trainer we use (TRL's SFT, DPO, GRPO) has such an auxiliary term for a multi-turn policy.

The replies are *sampled* at temperature 1, not greedy: the NLL of samples from the start is,
in expectation, KL(start || policy) plus a constant, so the term holds the whole distribution.
Greedy replies are the start's modes, and their NLL sharpens the policy instead: measured on
the default-adapter recipe, greedy replay of 16 NQ DEV replies moved plain chat further from
base (KL(base || policy) per token on base's replies to 60 other NQ DEV questions 0.080, against
0.019 with no replay), while it did restore base's answer to "What is the capital of France?".

The replies are generated once per run, with exact token ids, and saved as JSONL
(`write_replay` / `read_replay`), so resume and every round replay the same text.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from rankact.agent.batch import DEFAULT_BATCH_SIZE
from rankact.agent.errors import RankactError
from rankact.agent.llm import GenerationConfig
from rankact.alignment.evaluation.refusal import is_refusal, plain_prompt_ids
from rankact.alignment.feedback.demonstrations.replay_examples import HARMFUL_SETS, ReplayExample
from rankact.alignment.tasks import Task
from rankact.alignment.training.config import ReplaySettings
from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.losses import masked_nll
from rankact.alignment.training.runtime import step_indices
from rankact.alignment.training.tokenize import Encoded, collate, encode_prompt_completion

REPLAY_MAX_NEW_TOKENS = 64  # as long as the refusal eval's plain replies


class ReplayFileError(RankactError):
    """A replay file that is missing or has a line that is not a replay example."""


def worth_keeping(task: Task, reply: str) -> bool:
    """A reply to a harmful request is kept only when it refuses: replay keeps the starting
    policy's behaviour, but never teaches it to comply with a harmful request."""
    return task.metadata.get("dataset") not in HARMFUL_SETS or is_refusal(reply)


def generate_replay(llm: Any, sources: Sequence[Sequence[Task]], per_source: int = 16, *,
                    temperature: float = 1.0, seed: int = 0, max_new_tokens: int = REPLAY_MAX_NEW_TOKENS,
                    batch_size: int = DEFAULT_BATCH_SIZE, on_read: Callable[[int], None] | None = None,
                    progress: bool = False) -> list[ReplayExample]:
    """Up to `per_source` kept plain replies of `llm` (a local model: exact ids are needed)
    from each set of requests, in order; a set is read until that many are kept (a harmful
    set, where few replies are refusals, is read further) or it ends. Sampled at `temperature`
    (module docstring: 1 holds the distribution, 0 sharpens it), request i of a set with seed
    `seed + i`, so a rerun writes the same file. `on_read(n)` is called as each n requests are
    answered; `progress` shows a bar of them (a harmful set may be read to its end, minutes on
    a CPU)."""
    if progress:
        from rankact.alignment.evaluation.evaluate import progress_bar

        with progress_bar(True, "replay requests") as bar:
            job = bar.add_task("replay requests", total=sum(len(s) for s in sources))  # at most: a set may stop early

            def read(n: int) -> None:
                bar.advance(job, n)
                if on_read is not None:
                    on_read(n)

            return generate_replay(llm, sources, per_source, temperature=temperature, seed=seed,
                                   max_new_tokens=max_new_tokens, batch_size=batch_size, on_read=read)
    if not (hasattr(llm, "continue_batch") and hasattr(llm, "render_prompt")):
        raise RankactError("replay needs a local model (its exact token ids): not an HTTP or scripted backend")
    ends = sorted(getattr(llm, "eos_ids", None) or ())
    preferred = getattr(getattr(llm, "tokenizer", None), "eos_token_id", None)
    eos = preferred if preferred in ends else (ends[0] if ends else preferred)
    examples: list[ReplayExample] = []
    for requests in sources:
        kept = 0
        for start in range(0, len(requests), max(1, batch_size)):
            if kept >= per_source:
                break
            chunk = requests[start : start + batch_size]
            prompts = [plain_prompt_ids(llm, t.question) for t in chunk]
            configs = [GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + start + i)
                       for i in range(len(chunk))]
            for task, prompt, reply in zip(chunk, prompts, llm.continue_batch(prompts, configs), strict=True):
                ids = list(reply.token_ids or [])
                if reply.finish_reason == "stop" and reply.stop_sequence is None and eos is not None:
                    ids.append(int(eos))  # it ended its turn: replay the ending too, not only the words
                if ids and kept < per_source and worth_keeping(task, reply.text):
                    examples.append(ReplayExample(source=task.id, request=task.question, reply=reply.text,
                                                  prompt_ids=list(prompt), reply_ids=ids))
                    kept += 1
            if on_read is not None:
                on_read(len(chunk))
    return examples


def write_replay(path: str | Path, examples: Sequence[ReplayExample]) -> None:
    path = Path(path)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    partial.replace(path)


def read_replay(path: str | Path) -> list[ReplayExample]:
    path = Path(path)
    if not path.is_file():
        raise ReplayFileError(f"replay file not found: {path}")
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            examples.append(ReplayExample.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ReplayFileError(f"{path}:{number}: not a replay example ({str(exc).splitlines()[0]})") from exc
    if not examples:
        raise ReplayFileError(f"{path}: no replay examples")
    return examples


def replay_samples(examples: Sequence[ReplayExample], max_length: int) -> list[Encoded]:
    """Prompt as context, the reply trainable."""
    return [encode_prompt_completion(e.prompt_ids, e.reply_ids, max_length) for e in examples]


class ReplayTerm:
    """γ · NLL of a batch of replayed replies, a different batch each step (seeded, resumable).
    `ReplayTerm.load(settings, max_length, seed)` is None where no replay is configured."""

    def __init__(self, samples: list[Encoded], coef: float, batch_size: int, seed: int):
        self.samples, self.coef, self.batch_size, self.seed = samples, coef, batch_size, seed

    @classmethod
    def load(cls, settings: ReplaySettings, max_length: int, seed: int) -> ReplayTerm | None:
        if settings.replay is None or settings.replay_coef == 0:
            return None
        samples = [s for s in replay_samples(read_replay(settings.replay), max_length) if s.n_trainable]
        if not samples:
            raise ReplayFileError(f"{settings.replay}: no reply has a token to train")
        return cls(samples, settings.replay_coef, settings.replay_batch_size, seed)

    def loss(self, model, step: int, pad_id: int, device, chunk_size: int | None = None) -> torch.Tensor:
        """The weighted NLL per replayed token of step `step`'s batch."""
        indices = step_indices(step, len(self.samples), self.batch_size, self.seed)
        batch = collate([self.samples[i] for i in indices], pad_id).to(device)
        mask = batch.trainable_mask
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, mask, chunk_size=chunk_size)
        return self.coef * masked_nll(logp, mask)
