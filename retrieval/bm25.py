"""BM25 over chunk texts (bm25s), rebuilt lazily from the store after mutations: building
it for tens of thousands of chunks takes well under a second, and nothing is pickled."""
from __future__ import annotations

import re

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

_TOKEN = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without English stopwords (no stemmer: none is installed)."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


class BM25Index:
    def __init__(self, ids: np.ndarray, texts: list[str]):
        self.ids = np.asarray(ids, dtype=np.int64)
        self._row = {int(i): r for r, i in enumerate(self.ids)}
        self.model = bm25s.BM25()
        if len(texts):
            self.model.index([tokenize(t) for t in texts], show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int, subset: np.ndarray | None = None,
               positive_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, BM25 scores). With `subset`, only those ids compete. Chunks without a
        query term (score 0) fill the last places so k come back whenever k chunks compete,
        unless `positive_only` (hybrid fusion must not reward a non-match with a rank)."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        tokens = tokenize(query)
        scores = self.model.get_scores(tokens) if tokens else np.zeros(len(self), dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float32)
        if subset is not None:
            rows = np.array([self._row[int(i)] for i in subset if int(i) in self._row], dtype=np.int64)
        else:
            rows = np.arange(len(self))
        if positive_only:
            rows = rows[scores[rows] > 0]
        if len(rows) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        sub = scores[rows]
        order = np.lexsort((rows, -sub))[:k]  # by score, ties by position (stable, deterministic)
        return self.ids[rows[order]], sub[order]
