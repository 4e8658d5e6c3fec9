"""The dense index: an inner-product FAISS index inside `IndexIDMap2`, so chunks are
addressed by our own int64 ids. Vectors are normalized, so scores are cosine similarities.

Kinds: `flat` (exact), `hnsw` (graph), `ivf` (inverted lists, trained on the data), or
`auto` (by corpus size). HNSW cannot remove vectors, so after a delete it is rebuilt from
the vectors the store keeps (the caller passes them)."""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

# One OpenMP thread by default: queries come one at a time (nothing to parallelize), and on a
# busy 2-core machine OpenMP's spin-waiting made HNSW builds and searches ~10x slower.
FAISS_THREADS = int(os.environ.get("RANKACT_FAISS_THREADS", "1"))


@contextmanager
def faiss_threads() -> Iterator[None]:
    """FAISS's thread count for the calls inside only. FAISS and torch share one OpenMP runtime,
    and `omp_set_num_threads` sets the calling thread's count for both: set once at import, it
    left torch on one thread in every process that searched (an agent with the search tool
    generated and trained at half speed on 2 cores)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(FAISS_THREADS)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)

KINDS = ("flat", "hnsw", "ivf", "auto")
AUTO_HNSW_AT = 50_000  # below this, exact search is fast enough on a CPU
AUTO_IVF_AT = 2_000_000  # above this, HNSW's memory and build time hurt


# What each kind's base index is once read back (downcast); a file must hold this one.
_KIND_TYPES = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}


def resolve_kind(kind: str, n: int) -> str:
    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "auto":
        return kind
    return "flat" if n < AUTO_HNSW_AT else "hnsw" if n < AUTO_IVF_AT else "ivf"


def ivf_lists(n: int) -> int:
    # ~sqrt(n) lists, with at least ~39 training points per list (FAISS's own guidance)
    return max(1, min(round(math.sqrt(n)), n // 39))


class DenseIndex:
    def __init__(self, dimension: int, kind: str = "flat", *, hnsw_m: int = 32, ef_construction: int = 80,
                 ef_search: int = 64, nprobe: int | None = None):
        if kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"a built index is flat, hnsw or ivf, not {kind!r}")
        self.dimension, self.kind = dimension, kind
        self.hnsw_m, self.ef_construction, self.ef_search, self.nprobe = hnsw_m, ef_construction, ef_search, nprobe
        self.trained_on = 0  # IVF: how many vectors its lists were trained on
        self.index = faiss.IndexIDMap2(self._base(1))

    def _base(self, n: int) -> faiss.Index:
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dimension)
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = self.ef_construction
            base.hnsw.efSearch = self.ef_search
            return base
        nlist = ivf_lists(n)
        base = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dimension), self.dimension, nlist,
                                  faiss.METRIC_INNER_PRODUCT)
        base.nprobe = self.nprobe or max(1, min(nlist, max(8, nlist // 3)))
        return base

    @property
    def base(self) -> faiss.Index:
        return faiss.downcast_index(self.index.index)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """A fresh index over exactly these vectors (IVF retrains its lists on them)."""
        self.index = faiss.IndexIDMap2(self._base(len(ids)))
        self.trained_on = 0
        self.add(ids, vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with faiss_threads():
            if not self.index.is_trained:  # IVF: train on the first batch (rebuild retrains when it grew)
                self.index = faiss.IndexIDMap2(self._base(len(vectors)))  # lists sized for this data
                self.index.train(vectors)
                self.trained_on = len(vectors)
            self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    @property
    def can_remove(self) -> bool:
        return self.kind != "hnsw"

    def remove(self, ids: np.ndarray) -> None:
        if not self.can_remove:
            raise RuntimeError("HNSW cannot remove vectors; rebuild it")
        if len(ids):
            with faiss_threads():
                self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def needs_retrain(self) -> bool:
        """IVF lists trained on a much smaller corpus than now serve it poorly."""
        return self.kind == "ivf" and self.trained_on > 0 and len(self) > 4 * self.trained_on

    def search(self, query: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, cosine scores). With `subset`, only those ids compete (an exact
        selector on flat; callers score subsets themselves for approximate kinds)."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        k = min(k, len(self))
        params = None
        if subset is not None:
            if self.kind != "flat":
                raise ValueError("subset search is exact only on a flat index")
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64)))
        with faiss_threads():
            scores, ids = self.index.search(q, k, params=params)
        keep = ids[0] >= 0  # FAISS pads with -1 when fewer than k were reachable
        return ids[0][keep], scores[0][keep]

    def write(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def read(cls, path: Path, dimension: int, kind: str, **params) -> DenseIndex:
        """Read an index file, refusing one that is not what `kind` and `dimension` say (a
        flat index labelled hnsw would fail later, deep inside a search): ValueError."""
        dense = cls(dimension, kind, **params)
        index = faiss.read_index(str(path))  # returned as its own class (IndexIDMap2, ...)
        if not isinstance(index, faiss.IndexIDMap2):
            # ValueError, not TypeError: the file's content is bad, not the caller's argument
            raise ValueError(f"index file holds a {type(index).__name__}, not an IndexIDMap2 of chunk ids")  # noqa: TRY004
        dense.index = index
        if index.d != dimension:
            raise ValueError(f"index file has dimension {index.d}, expected {dimension}")
        base = dense.base
        if not isinstance(base, _KIND_TYPES[kind]) or base.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"index file holds a {type(base).__name__} (metric {base.metric_type}), "
                             f"but the manifest says {kind} with inner product")
        if index.id_map.size() != index.ntotal:
            raise ValueError(f"index file maps {index.id_map.size()} ids to {index.ntotal} vectors")
        if kind == "hnsw":
            base.hnsw.efSearch = dense.ef_search
        elif kind == "ivf":
            dense.trained_on = len(dense)
            if dense.nprobe:
                base.nprobe = dense.nprobe
        return dense
