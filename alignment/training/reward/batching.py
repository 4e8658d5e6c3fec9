"""Reward-model batches: pairs tokenized with left truncation of the prompt, then packed so
that all comparisons of one prompt stay in one batch, each sequence forwarded once."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import RankactError
from agent.trajectory import Trajectory
from alignment.feedback.pairs import PreferencePair, TextPair, prompt_and_response

# --------------------------------------------------------------------------- tokenizing


@dataclass
class TokenizedPair:
    group: str
    chosen: list[int]  # prompt + response ids, already truncated
    rejected: list[int]


@dataclass
class TruncationStats:
    sequences: int = 0
    prompt_truncated: int = 0  # prompt cut from the left to fit
    response_truncated: int = 0  # response alone too long: cut from the right, prompt dropped

    def describe(self) -> str:
        return (
            f"{self.sequences} sequences; prompt truncated (left) in {self.prompt_truncated}, "
            f"response truncated (right) in {self.response_truncated}"
        )


def fit(prompt: list[int], response: list[int], max_length: int, stats: TruncationStats) -> list[int]:
    """prompt + response in at most max_length tokens: cut the prompt from the left, never the
    response; a response that alone is too long is cut from the right (and counted apart)."""
    stats.sequences += 1
    if len(prompt) + len(response) <= max_length:
        return prompt + response
    if len(response) >= max_length:
        stats.response_truncated += 1
        return response[:max_length]
    stats.prompt_truncated += 1
    return prompt[len(prompt) + len(response) - max_length :] + response


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def trajectory_ids(trajectory: Trajectory, tokenizer) -> list[int]:
    """The trajectory as the policy saw it: its segments' recorded token ids when every segment
    has them, else the tokenized transcript."""
    if not trajectory.segments:
        raise RankactError(f"trajectory {trajectory.id} has no segments to score")
    if all(s.token_ids is not None for s in trajectory.segments):
        return [t for s in trajectory.segments for t in s.token_ids]
    return _encode(tokenizer, trajectory.transcript())


def _trajectory_parts(trajectory: Trajectory, tokenizer) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids), split where `prompt_and_response` splits the text."""
    segments = trajectory.segments
    cut = 0
    while cut < len(segments) and segments[cut].role == "prompt" and not segments[cut].forced:
        cut += 1
    if segments and all(s.token_ids is not None for s in segments):
        return [t for s in segments[:cut] for t in s.token_ids], [t for s in segments[cut:] for t in s.token_ids]
    prompt, response = prompt_and_response(trajectory)
    return _encode(tokenizer, prompt), _encode(tokenizer, response)


def tokenize_pairs(
    pairs: Sequence[PreferencePair | TextPair], tokenizer, max_length: int
) -> tuple[list[TokenizedPair], TruncationStats]:
    stats = TruncationStats()
    out: list[TokenizedPair] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, PreferencePair):
            if not pair.chosen.segments or not pair.rejected.segments:
                raise RankactError(f"pair {i} ({pair.question_id}): a trajectory has no segments")
            cp, cr = _trajectory_parts(pair.chosen, tokenizer)
            rp, rr = _trajectory_parts(pair.rejected, tokenizer)
            if cp != rp:  # different prompts (e.g. prompt versions): each scored whole
                cp, cr, rp, rr = [], cp + cr, [], rp + rr
            group = pair.question_id
        else:
            cp = rp = _encode(tokenizer, pair.prompt)
            cr, rr = _encode(tokenizer, pair.chosen), _encode(tokenizer, pair.rejected)
            group = pair.group or f"pair-{i}"
        if not cr and not cp:
            raise RankactError(f"pair {i}: empty chosen text")
        if not rr and not rp:
            raise RankactError(f"pair {i}: empty rejected text")
        out.append(TokenizedPair(group, fit(cp, cr, max_length, stats), fit(rp, rr, max_length, stats)))
    return out, stats


# --------------------------------------------------------------------------- batching


def group_pairs(pairs: Sequence[TokenizedPair]) -> list[list[int]]:
    """Indices of pairs, grouped by prompt/question, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(pair.group, []).append(i)
    return list(groups.values())


def make_batches(groups: Sequence[list[int]], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle groups (not pairs) with a seed per epoch and pack them into batches of about
    `batch_size` pairs. A group is never split; one larger than `batch_size` is a batch alone."""
    order = list(range(len(groups)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    for g in order:
        group = groups[g]
        if current and len(current) + len(group) > batch_size:
            batches.append(current)
            current = []
        current = current + list(group)
    if current:
        batches.append(current)
    return batches


@dataclass
class Batch:
    """Unique sequences of a batch (InstructGPT: each response forwarded once, however many
    pairs it is in) plus, per pair, the row of its chosen and rejected sequence and a weight
    so that each group counts once in the loss."""

    sequences: list[list[int]]
    chosen_rows: list[int]
    rejected_rows: list[int]
    weights: list[float]

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


def collate(pairs: Sequence[TokenizedPair], indices: Sequence[int]) -> Batch:
    rows: dict[tuple[int, ...], int] = {}
    sizes: dict[str, int] = {}
    for i in indices:
        sizes[pairs[i].group] = sizes.get(pairs[i].group, 0) + 1

    def row(ids: list[int]) -> int:
        return rows.setdefault(tuple(ids), len(rows))

    chosen = [row(pairs[i].chosen) for i in indices]
    rejected = [row(pairs[i].rejected) for i in indices]
    weights = [1.0 / sizes[pairs[i].group] for i in indices]
    return Batch([list(k) for k in rows], chosen, rejected, weights)


def pad(sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right"):
    """(input_ids, attention_mask) tensors, padded on `side`."""
    import torch

    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if not seq:
            continue
        sl = slice(0, len(seq)) if side == "right" else slice(length - len(seq), length)
        ids[i, sl] = torch.tensor(seq, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask
