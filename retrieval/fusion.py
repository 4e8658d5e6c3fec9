"""Rank fusion and diversification, as pure functions over ids and vectors."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RRF_K = 60  # the constant of Cormack et al. (2009); damps the weight of top ranks


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of 1 / (k + rank), rank from 1.
    Returns (id, score) best first; ties keep the order of first appearance."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[int(item)] = scores.get(int(item), 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lambda_: float = 0.5) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein, 1998): greedily pick the candidate
    maximizing lambda * sim(query, c) - (1 - lambda) * max sim(c, already picked).
    `candidates` are normalized row vectors; returns their row indices in pick order."""
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"mmr lambda must be in [0, 1], got {lambda_}")
    n = len(candidates)
    if n == 0 or k <= 0:
        return []
    relevance = candidates @ query.reshape(-1)
    redundancy = np.full(n, -np.inf)
    picked: list[int] = []
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = np.where(available, lambda_ * relevance - (1 - lambda_) * penalty, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return picked
