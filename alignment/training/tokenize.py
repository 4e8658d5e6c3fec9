"""Trajectories -> token tensors for the policy trainers.

A trajectory's `segments` already carry the token ids the model saw and sampled (local
backends), so we concatenate those and never re-tokenize across a segment boundary (BPE
merges across a boundary would give ids the model never produced). A segment without ids
(e.g. collected over HTTP) is tokenized on its own. Only `generated`, non-`forced` tokens
are trainable; prompt, observation and forced tokens are context.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from agent.trajectory import Trajectory

# Role ids per token, kept beside the mask so metrics and tests can tell tokens apart.
log = logging.getLogger(__name__)

ROLE_IDS = {"prompt": 0, "generated": 1, "observation": 2, "padding": 3}


@dataclass
class EncodedTrajectory:
    input_ids: list[int]
    trainable: list[bool]
    roles: list[int]
    truncated: bool = False
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trainable(self) -> int:
        return sum(self.trainable)


def _segment_ids(segment, tokenizer) -> list[int]:
    if segment.token_ids is not None:
        return list(segment.token_ids)
    return list(tokenizer.encode(segment.text, add_special_tokens=False))


def encode_trajectory(trajectory: Trajectory, tokenizer, max_length: int | None = None) -> EncodedTrajectory:
    """Concatenate the segments' ids with a trainable mask and per-token roles.

    Over `max_length`: drop tokens from the start of the leading prompt first (left
    truncation: the instructions' beginning matters least to the tokens we train); if the
    prompt is gone and it is still too long, drop the end instead, so the first generated
    tokens keep the context they were sampled in.
    """
    if trajectory.sampling.get("guided") is False and len(trajectory.steps) > 1:
        # Unguided runs re-render the chat for every call (clean scratchpad), so after the
        # first step their linear transcript only approximates the context each call saw.
        log.warning("trajectory %s was recorded without guided decoding: from step 2 on its "
                    "segments approximate what the model saw; train on guided trajectories", trajectory.id)
    ids: list[int] = []
    trainable: list[bool] = []
    roles: list[int] = []
    for segment in trajectory.segments:
        seg_ids = _segment_ids(segment, tokenizer)
        learn = segment.role == "generated" and not segment.forced
        ids.extend(seg_ids)
        trainable.extend([learn] * len(seg_ids))
        roles.extend([ROLE_IDS[segment.role]] * len(seg_ids))
    truncated = False
    if max_length is not None and len(ids) > max_length:
        truncated = True
        leading_prompt = next((i for i, r in enumerate(roles) if r != ROLE_IDS["prompt"]), len(roles))
        # Keep >= 1 context token so the first trainable token still has a prediction.
        cut = min(len(ids) - max_length, max(leading_prompt - 1, 0))
        ids, trainable, roles = ids[cut:], trainable[cut:], roles[cut:]
        ids, trainable, roles = ids[:max_length], trainable[:max_length], roles[:max_length]
    if trainable:
        trainable[0] = False  # position 0 has no prediction to train
    return EncodedTrajectory(ids, trainable, roles, truncated, {"trajectory_id": trajectory.id})


def encode_prompt_completion(prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> EncodedTrajectory:
    """A single-turn sample (prompt then completion), e.g. synthetic rollouts in tests."""
    ids = list(prompt_ids) + list(completion_ids)
    trainable = [False] * len(prompt_ids) + [True] * len(completion_ids)
    roles = [ROLE_IDS["prompt"]] * len(prompt_ids) + [ROLE_IDS["generated"]] * len(completion_ids)
    if trainable:
        trainable[0] = False
    return EncodedTrajectory(ids, trainable, roles)


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


def collate(samples: Sequence[EncodedTrajectory], pad_token_id: int) -> Batch:
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


def pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
