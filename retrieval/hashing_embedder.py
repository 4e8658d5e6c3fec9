"""A deterministic, dependency-free embedder: a signed hashed bag of words. It knows no
meaning (synonyms do not meet), but it is instant, so tests of index mechanics and offline
demos use it in place of a neural model."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class HashingEmbedder:
    def __init__(self, dimension: int = 32, *, name: str | None = None, max_tokens: int = 256,
                 special_tokens: int = 2):
        self.dimension = dimension
        self.name = name or f"hashing-{dimension}"
        self.max_tokens = max_tokens
        self.special_tokens = special_tokens
        self.encode_calls = 0
        self.encoded_texts = 0

    def token_offsets(self, text: str) -> tuple[list[tuple[int, int]], list[int | None] | None]:
        offsets = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        return offsets, list(range(len(offsets)))

    def _bucket(self, token: str) -> tuple[int, float]:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if (value >> 63) & 1 else -1.0

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.encode_calls += 1
        self.encoded_texts += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                if token.isalnum():
                    col, sign = self._bucket(token)
                    out[row, col] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
