"""The one way a trajectory or a preference pair becomes token ids, for every trainer.

SFT, DPO, PPO and the reward model all call these functions, so a sequence is tokenized,
truncated and padded the same way wherever it is trained or scored (a reward model scores
a PPO rollout on exactly the ids it was trained on).

- Recorded ids are reused: a trajectory's `segments` carry the token ids the model saw and
  sampled (local backends), so they are concatenated, never re-tokenized across a segment
  boundary (BPE merges across a boundary would give ids the model never produced). A
  segment without ids (e.g. collected over HTTP) is tokenized on its own.
- Trainable tokens: only `generated`, non-`forced` tokens. Prompt, observation and forced
  tokens are context. Position 0 has no prediction, so it is never trainable.
- One truncation policy (`truncate`), TRL's: over `max_length`, drop tokens from the start
  of the leading prompt first (its beginning matters least to the tokens after it), keeping
  one so the first response token still has a prediction; if it is still too long, drop the
  end, so the tokens that remain keep the context they were sampled in.
- One padding rule: right padding with `pad_token_id(tokenizer)` (`collate`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch

from rankact.agent.llm.local import pad_token_id
from rankact.agent.trajectory import MAX_TOKEN_IDS, Trajectory
from rankact.alignment.feedback.demonstrations.recording import SOURCE as DEMONSTRATION
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair

log = logging.getLogger(__name__)

# Role ids per token, kept beside the mask so metrics and tests can tell tokens apart.
ROLE_IDS = {"prompt": 0, "generated": 1, "observation": 2, "padding": 3}

__all__ = ["ROLE_IDS", "Batch", "Encoded", "TruncationStats", "collate", "encode_pair", "encode_prompt_completion",
           "encode_text", "encode_trajectory", "pad_token_id", "require_exact_ids", "segment_steps", "text_ids",
           "truncate", "truncation_stats", "without_steps"]


@dataclass
class Encoded:
    """One sequence ready for a trainer: ids, which of them a loss may use, and their roles."""

    input_ids: list[int]
    trainable: list[bool]
    roles: list[int]
    steps: list[int] = field(default_factory=list)  # per token, the agent step it belongs to (step flags)
    prompt_cut: int = 0  # tokens dropped from the start of the leading prompt
    end_cut: int = 0  # tokens dropped from the end
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def truncated(self) -> bool:
        return bool(self.prompt_cut or self.end_cut)

    @property
    def n_trainable(self) -> int:
        return sum(self.trainable)


def without_steps(encoded: Encoded, steps: set[int]) -> Encoded:
    """The same sequence with the tokens of agent `steps` made untrainable (context only): how a
    step an annotator flagged stays out of what SFT imitates and of the side DPO raises."""
    trainable = [t and s not in steps for t, s in zip(encoded.trainable, encoded.steps, strict=True)]
    return replace(encoded, trainable=trainable)


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a piece of text, no special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def truncate(encoded: Encoded, max_length: int | None) -> Encoded:
    """The one truncation policy (see the module docstring); the first token is never trainable."""
    ids, trainable, roles = list(encoded.input_ids), list(encoded.trainable), list(encoded.roles)
    steps = list(encoded.steps) or [0] * len(ids)
    prompt_cut = end_cut = 0
    if max_length is not None and len(ids) > max_length:
        leading_prompt = next((i for i, r in enumerate(roles) if r != ROLE_IDS["prompt"]), len(roles))
        prompt_cut = min(len(ids) - max_length, max(leading_prompt - 1, 0))
        ids, trainable, roles, steps = ids[prompt_cut:], trainable[prompt_cut:], roles[prompt_cut:], steps[prompt_cut:]
        end_cut = len(ids) - max_length if len(ids) > max_length else 0
        ids, trainable, roles, steps = ids[:max_length], trainable[:max_length], roles[:max_length], steps[:max_length]
    if trainable:
        trainable[0] = False  # position 0 has no prediction to train
    return replace(encoded, input_ids=ids, trainable=trainable, roles=roles, steps=steps,
                   prompt_cut=encoded.prompt_cut + prompt_cut, end_cut=encoded.end_cut + end_cut)


def _assemble(pieces: Iterable[tuple[str, list[int], bool]], max_length: int | None, meta: dict,
              steps: Sequence[int] | None = None) -> Encoded:
    ids: list[int] = []
    trainable: list[bool] = []
    roles: list[int] = []
    token_steps: list[int] = []
    for n, (role, piece, learn) in enumerate(pieces):
        ids.extend(piece)
        trainable.extend([learn] * len(piece))
        roles.extend([ROLE_IDS[role]] * len(piece))
        token_steps.extend([steps[n] if steps is not None else 0] * len(piece))
    return truncate(Encoded(ids, trainable, roles, token_steps, meta=meta), max_length)


def segment_steps(trajectory: Trajectory) -> list[int]:
    """The agent step each segment belongs to. Every step but the last ends with exactly one
    observation (a tool result, an error or a format hint), so a segment's step is the number
    of observations before it; an observation belongs to the step it answers."""
    steps, step = [], 0
    for segment in trajectory.segments:
        steps.append(step)
        if segment.role == "observation":
            step += 1
    return steps


def encode_trajectory(trajectory: Trajectory, tokenizer, max_length: int | None = None) -> Encoded:
    """A trajectory's segments as one sequence: recorded ids, trainable = generated and not forced."""
    if trajectory.sampling.get("guided") is False and len(trajectory.steps) > 1:
        # Unguided runs re-render the chat for every call (clean scratchpad), so after the
        # first step their linear transcript only approximates the context each call saw.
        log.warning("trajectory %s was recorded without guided decoding: from step 2 on its "
                    "segments approximate what the model saw; train on guided trajectories", trajectory.id)
    vocab_size = len(tokenizer) if hasattr(tokenizer, "__len__") else MAX_TOKEN_IDS
    if (outside := trajectory.token_ids_outside(vocab_size)) is not None:
        # An embedding lookup would fail on it deep in the trainer (IndexError; a device assert on a GPU).
        from rankact.alignment.errors import InexactTokenIds

        raise InexactTokenIds(f"trajectory {trajectory.id} {outside} of this model's tokenizer: it was not "
                              "recorded with this model; leave it out or collect it again")
    pieces = [
        (s.role, list(s.token_ids) if s.token_ids is not None else text_ids(tokenizer, s.text),
         s.role == "generated" and not s.forced)
        for s in trajectory.segments
    ]
    meta = {"trajectory_id": trajectory.id}
    if trajectory.metadata.get("source") == DEMONSTRATION:
        meta["demonstration"] = True  # written by a person, not sampled (monitors tell them apart)
    return _assemble(pieces, max_length, meta, segment_steps(trajectory))


def require_exact_ids(trajectories: Iterable[Trajectory], retokenize: bool = False) -> None:
    """The policy trainers' gate: every trajectory must carry the exact ids its model saw and
    produced (`Trajectory.has_exact_ids`); re-tokenizing text drifts from them (merges across
    boundaries, lost end-of-turn tokens). `retokenize` lets them through with a warning."""
    from rankact.alignment.errors import InexactTokenIds

    inexact = [t for t in trajectories if not t.has_exact_ids]
    if not inexact:
        return
    if not retokenize:
        raise InexactTokenIds(
            f"{len(inexact)} trajectories have no exact token ids (e.g. {inexact[0].id}, {inexact[0].model.backend} "
            "backend): collect with a local model or a served one with --tokenizer, or pass --retokenize to "
            "train on their re-tokenized text")
    log.warning("--retokenize: training on %d trajectories without exact token ids; their text is tokenized "
                "again, which can differ from the ids the model produced", len(inexact))


def encode_prompt_completion(prompt_ids: Sequence[int], completion_ids: Sequence[int],
                             max_length: int | None = None) -> Encoded:
    """A single-turn sample from ids: the prompt is context, the completion trainable."""
    return _assemble([("prompt", list(prompt_ids), False), ("generated", list(completion_ids), True)],
                     max_length, {})


def encode_text(prompt: str, response: str, tokenizer, max_length: int | None = None) -> Encoded:
    """A text sample (TRL / HH-RLHF pairs): prompt and response tokenized on their own, so no
    token merges across the cut."""
    return encode_prompt_completion(text_ids(tokenizer, prompt), text_ids(tokenizer, response), max_length)


def encode_pair(pair: PreferencePair | TextPair, tokenizer, max_length: int | None) -> tuple[Encoded, Encoded]:
    """(chosen, rejected) of a `PreferencePair` (whole trajectories) or a `TextPair`."""
    if isinstance(pair, PreferencePair):
        return (encode_trajectory(pair.chosen, tokenizer, max_length),
                encode_trajectory(pair.rejected, tokenizer, max_length))
    return (encode_text(pair.prompt, pair.chosen, tokenizer, max_length),
            encode_text(pair.prompt, pair.rejected, tokenizer, max_length))


@dataclass
class TruncationStats:
    sequences: int = 0
    prompt_truncated: int = 0  # the leading prompt was cut from the left
    response_truncated: int = 0  # the end was cut (the sequence was too long even without its prompt)

    def describe(self) -> str:
        return (f"{self.sequences} sequences; prompt truncated (left) in {self.prompt_truncated}, "
                f"end truncated (right) in {self.response_truncated}")


def truncation_stats(encoded: Iterable[Encoded]) -> TruncationStats:
    stats = TruncationStats()
    for e in encoded:
        stats.sequences += 1
        stats.prompt_truncated += bool(e.prompt_cut)
        stats.response_truncated += bool(e.end_cut)
    return stats


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] right-padded
    attention_mask: torch.Tensor  # [B, T] 1 for real tokens
    trainable_mask: torch.Tensor  # [B, T] 1 for tokens a loss may use
    roles: torch.Tensor  # [B, T] ROLE_IDS

    def to(self, device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.trainable_mask, self.roles)))

    @property
    def last_trainable_index(self) -> torch.Tensor:
        """Index of each row's last trainable token (where a sequence reward is placed); -1 if none."""
        positions = torch.arange(self.input_ids.shape[1], device=self.input_ids.device).expand_as(self.input_ids)
        return torch.where(self.trainable_mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values


def collate(samples: Sequence[Encoded], pad_token_id: int) -> Batch:
    """Right-pad to the longest sample. Padding is masked out of attention and losses."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    length = max(1, max(len(s) for s in samples))
    batch = len(samples)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    attention = torch.zeros((batch, length), dtype=torch.long)
    trainable = torch.zeros((batch, length), dtype=torch.float32)
    roles = torch.full((batch, length), ROLE_IDS["padding"], dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample)
        if n == 0:  # an empty transcript: one attended pad token, so attention has a key (no NaN)
            attention[row, 0] = 1
            continue
        input_ids[row, :n] = torch.tensor(sample.input_ids, dtype=torch.long)
        attention[row, :n] = 1
        trainable[row, :n] = torch.tensor(sample.trainable, dtype=torch.float32)
        roles[row, :n] = torch.tensor(sample.roles, dtype=torch.long)
    return Batch(input_ids, attention, trainable, roles)
