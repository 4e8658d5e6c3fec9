"""Reward-model batches: pairs through the one tokenization (`rankact.alignment.training.tokenize`),
packed so that all comparisons of one prompt stay in one batch, each sequence forwarded once."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from rankact.agent.errors import RankactError
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.tokenize import TruncationStats, encode_pair, truncation_stats


@dataclass
class TokenizedPair:
    group: str
    chosen: list[int]  # ids from `rankact.alignment.training.tokenize.encode_pair`, already truncated
    rejected: list[int]


def tokenize_pairs(
    pairs: Sequence[PreferencePair | TextPair], tokenizer, max_length: int
) -> tuple[list[TokenizedPair], TruncationStats]:
    """Every pair through the one tokenization (`encode_pair`), grouped by question or prompt."""
    out: list[TokenizedPair] = []
    encoded = []
    for i, pair in enumerate(pairs):
        chosen, rejected = encode_pair(pair, tokenizer, max_length)
        if not len(chosen):
            raise RankactError(f"pair {i}: empty chosen text")
        if not len(rejected):
            raise RankactError(f"pair {i}: empty rejected text")
        group = pair.question_id if isinstance(pair, PreferencePair) else (pair.group or f"pair-{i}")
        out.append(TokenizedPair(group, chosen.input_ids, rejected.input_ids))
        encoded += [chosen, rejected]
    return out, truncation_stats(encoded)


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
class PairBatch:
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


def collate_pairs(pairs: Sequence[TokenizedPair], indices: Sequence[int]) -> PairBatch:
    rows: dict[tuple[int, ...], int] = {}
    sizes: dict[str, int] = {}
    for i in indices:
        sizes[pairs[i].group] = sizes.get(pairs[i].group, 0) + 1

    def row(ids: list[int]) -> int:
        return rows.setdefault(tuple(ids), len(rows))

    chosen = [row(pairs[i].chosen) for i in indices]
    rejected = [row(pairs[i].rejected) for i in indices]
    weights = [1.0 / sizes[pairs[i].group] for i in indices]
    return PairBatch([list(k) for k in rows], chosen, rejected, weights)
