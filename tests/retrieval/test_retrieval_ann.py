"""Approximate indexes against exact search, and the pure fusion functions."""
from __future__ import annotations

import numpy as np
import pytest

from rankact.retrieval.dense_index import DenseIndex, resolve_kind
from rankact.retrieval.fusion import mmr, reciprocal_rank_fusion


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(("kind", "min_recall"), [("hnsw", 0.95), ("ivf", 0.75)])
def test_recall_at_10_against_flat(kind, min_recall):
    rng = np.random.default_rng(0)
    vectors, queries = _unit(rng, 4000, 32), _unit(rng, 100, 32)
    ids = np.arange(4000, dtype=np.int64) * 7 + 3  # ids are ours, not positions
    flat, approx = DenseIndex(32, "flat"), DenseIndex(32, kind)
    flat.add(ids, vectors)
    approx.add(ids, vectors)
    recalls = []
    for q in queries:
        exact, scores = flat.search(q, 10)
        found, _ = approx.search(q, 10)
        recalls.append(len(set(exact) & set(found)) / 10)
        assert scores == pytest.approx(vectors[(exact - 3) // 7] @ q, abs=1e-5)  # cosine of unit vectors
    assert np.mean(recalls) >= min_recall, np.mean(recalls)


def test_remove_and_kinds():
    rng = np.random.default_rng(1)
    index = DenseIndex(8, "ivf")
    index.add(np.arange(100, dtype=np.int64), _unit(rng, 100, 8))
    index.remove(np.array([5, 6], dtype=np.int64))
    assert len(index) == 98 and 5 not in set(index.ids())
    with pytest.raises(RuntimeError, match="rebuild"):
        DenseIndex(8, "hnsw").remove(np.array([1], dtype=np.int64))
    assert [resolve_kind("auto", n) for n in (10, 100_000, 5_000_000)] == ["flat", "hnsw", "ivf"]
    with pytest.raises(ValueError, match="one of"):
        resolve_kind("lsh", 1)


def test_rrf_scores_and_order():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2]
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)
    assert reciprocal_rank_fusion([]) == []


def test_mmr_trades_relevance_for_novelty():
    q = np.array([1.0, 0.0, 0.0])
    a = np.array([0.99, 0.141, 0.0])
    dup = np.array([0.99, 0.141, 0.0])
    other = np.array([0.8, 0.0, 0.6])
    cands = np.stack([a, dup, other])
    assert mmr(q, cands, 2, lambda_=1.0) == [0, 1]  # pure relevance
    assert mmr(q, cands, 2, lambda_=0.5) == [0, 2]  # the duplicate is penalized
    assert mmr(q, cands, 5) == [0, 2, 1]
    with pytest.raises(ValueError):
        mmr(q, cands, 2, lambda_=1.5)


def test_faiss_thread_count_does_not_leak_into_torch():
    """FAISS and torch share one OpenMP runtime: FAISS's one thread applies inside its calls only,
    so a process that searches keeps torch's threads (it once halved generation and training)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import numpy as np, torch
before = torch.get_num_threads()  # OMP_NUM_THREADS=2 (not set_num_threads, which hid the leak)
from rankact.retrieval.dense_index import DenseIndex
import faiss
index = DenseIndex(8)
seen = []
class Spy:  # records the thread count FAISS runs with, then delegates
    def __init__(self, inner): self.inner = inner
    def __getattr__(self, name): return getattr(self.inner, name)
    def search(self, *a, **kw):
        seen.append(faiss.omp_get_max_threads())
        return self.inner.search(*a, **kw)
index.add(np.arange(4), np.eye(4, 8, dtype=np.float32))
index.index = Spy(index.index)
ids, _ = index.search(np.eye(1, 8, dtype=np.float32)[0], 1)
assert list(ids) == [0], ids
assert seen == [1], seen
assert before == 2 and torch.get_num_threads() == before, (before, torch.get_num_threads())
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "RANKACT_FAISS_THREADS"}
    env["OMP_NUM_THREADS"] = "2"
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
