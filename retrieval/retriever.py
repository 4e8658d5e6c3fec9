"""`Retriever`: the facade over loaders, chunking, embedding (with its cache), the FAISS
index, BM25 and the document store. Every mutation keeps the index and the store in step:
it is applied to both or, if anything fails, to neither."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from rankact.retrieval.bm25 import BM25Index
from rankact.retrieval.chunking import ChunkingConfig, chunk_spans
from rankact.retrieval.dense_index import KINDS, DenseIndex, resolve_kind
from rankact.retrieval.docstore import DocStore
from rankact.retrieval.documents import Document, Hit, LoadReport
from rankact.retrieval.embedder import (
    DEFAULT_MODEL,
    Embedder,
    TextEmbedder,
    cache_key,
    make_embedder,
    normalize_rows,
)
from rankact.retrieval.errors import DocumentError, EmbedderMismatchError, IndexFormatError, RetrievalError
from rankact.retrieval.fusion import RRF_K, reciprocal_rank_fusion
from rankact.retrieval.fusion import mmr as mmr_order
from rankact.retrieval.integrity import check_loaded
from rankact.retrieval.loaders import Source, load_documents
from rankact.retrieval.manifest import (
    INDEX_FILE,
    STORE_FILE,
    Manifest,
    read_manifest,
    verify_files,
    warn_unverified,
    write_manifest,
)
from rankact.retrieval.store_io import recover, save_atomically

Mode = Literal["dense", "bm25", "hybrid"]
MODES = ("dense", "bm25", "hybrid")
HYBRID_DEPTH = 50  # how deep each list goes before fusion


class WriteReport(BaseModel):
    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    chunks: int = 0  # chunks written
    embedded: int = 0  # texts actually sent to the embedder (the rest came from the cache)


class IndexReport(WriteReport):
    load: LoadReport = Field(default_factory=LoadReport)


class Retriever:
    def __init__(self, embedder: TextEmbedder | None = None, *, chunk_tokens: int = 256, overlap: int = 32,
                 index: str = "flat", show_progress: bool = False):
        self.embedder = embedder if embedder is not None else Embedder()
        if chunk_tokens > self.embedder.max_tokens:
            raise ValueError(f"chunk_tokens={chunk_tokens} exceeds the embedder's limit of "
                             f"{self.embedder.max_tokens} tokens")
        if chunk_tokens - self.embedder.special_tokens < 1:
            raise ValueError(f"chunk_tokens={chunk_tokens} leaves no room beside the special tokens")
        if not 0 <= overlap < chunk_tokens - self.embedder.special_tokens:
            raise ValueError(f"overlap must be >= 0 and smaller than chunk_tokens minus special tokens, got {overlap}")
        if index not in KINDS:
            raise ValueError(f"index must be one of {', '.join(KINDS)}, got {index!r}")
        self.chunking = ChunkingConfig(max_tokens=chunk_tokens, overlap=overlap)
        self.index_kind = index
        self.show_progress = show_progress
        self.store = DocStore()
        self.dense = DenseIndex(self.embedder.dimension, resolve_kind(index, 0))
        self._dense_stale = False
        self._bm25: BM25Index | None = None
        self._lock = threading.RLock()

    # ---- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of chunks."""
        return self.store.count_chunks()

    @property
    def num_documents(self) -> int:
        return self.store.count_documents()

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self.store.has_document(doc_id)

    def get_document(self, doc_id: str) -> Document | None:
        return self.store.document(doc_id)

    # ---- writing ------------------------------------------------------------------------
    def add(self, documents: Iterable[Document | Mapping[str, Any]]) -> WriteReport:
        """Add new documents; an id already present is an error (use update or upsert)."""
        return self._write(documents, "add")

    def update(self, documents: Iterable[Document | Mapping[str, Any]]) -> WriteReport:
        """Replace existing documents (their old chunk ids retire for good)."""
        return self._write(documents, "update")

    def upsert(self, documents: Iterable[Document | Mapping[str, Any]]) -> WriteReport:
        """Add or replace; a document identical to the stored one is left alone."""
        return self._write(documents, "upsert")

    def index(self, sources: Source | Iterable[Source]) -> IndexReport:
        """Load files, folders, globs or objects and upsert what loaded; per-file errors are
        in the report's `load.errors`."""
        report = load_documents(sources)
        written = self.upsert(report.documents)
        return IndexReport(**written.model_dump(), load=report)

    def delete(self, doc_ids: Iterable[str] | str, *, missing_ok: bool = False) -> int:
        """Delete documents by id from the index and the store together; returns the number
        of chunks removed. Their ids are never given out again."""
        doc_ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        with self._lock:
            missing = [d for d in doc_ids if not self.store.has_document(d)]
            if missing and not missing_ok:
                raise DocumentError(f"unknown document id(s): {', '.join(map(repr, missing[:5]))}")
            removed: list[int] = []
            try:
                for doc_id in doc_ids:
                    if doc_id not in missing:
                        removed.extend(self.store.delete_document(doc_id))
                self._remove_dense(np.array(removed, dtype=np.int64))
                self.store.conn.commit()
            except BaseException:
                self._rollback()
                raise
            self._bm25 = None
            return len(removed)

    def _write(self, documents: Iterable[Document | Mapping[str, Any]], mode: str) -> WriteReport:
        docs = [d if isinstance(d, Document) else Document.model_validate(d) for d in documents]
        seen: set[str] = set()
        for doc in docs:
            if doc.id in seen:
                raise DocumentError(f"document id {doc.id!r} appears twice in one call")
            seen.add(doc.id)
        with self._lock:
            report = WriteReport()
            todo: list[tuple[Document, list[tuple[int, int]]]] = []
            for doc in docs:
                exists = self.store.has_document(doc.id)
                if mode == "add" and exists:
                    raise DocumentError(f"document {doc.id!r} already exists; use update or upsert")
                if mode == "update" and not exists:
                    raise DocumentError(f"unknown document id {doc.id!r}; use add or upsert")
                if exists and mode == "upsert" and self.store.document(doc.id) == doc:
                    report.unchanged.append(doc.id)
                    continue
                spans = self._chunk(doc)
                if not spans:
                    raise DocumentError(f"document {doc.id!r} has no text to index")
                todo.append((doc, spans))
                (report.updated if exists else report.added).append(doc.id)
            # Embed before touching the index or the store: a failure here changes nothing.
            texts = [doc.text[s:e] for doc, spans in todo for s, e in spans]
            keys = [cache_key(self.embedder.name, t) for t in texts]
            vectors, report.embedded = self._embed(texts, keys)
            report.chunks = len(texts)
            removed: list[int] = []
            new_ids: list[int] = []
            try:
                for doc, spans in todo:
                    if self.store.has_document(doc.id):
                        removed.extend(self.store.delete_document(doc.id))
                    ids = self.store.allocate_ids(len(spans))
                    self.store.insert_document(doc, ids, spans, keys[len(new_ids):len(new_ids) + len(spans)])
                    new_ids.extend(ids)
                self._remove_dense(np.array(removed, dtype=np.int64))
                if not self._dense_stale:
                    self.dense.add(np.array(new_ids, dtype=np.int64), vectors)
                self.store.conn.commit()
            except BaseException:
                self._rollback()
                raise
            if todo:
                self._bm25 = None
            return report

    def _chunk(self, doc: Document) -> list[tuple[int, int]]:
        offsets, word_ids = self.embedder.token_offsets(doc.text)
        budget = self.chunking.max_tokens - self.embedder.special_tokens
        return [(s.start, s.end) for s in chunk_spans(offsets, word_ids, budget, self.chunking.overlap)]

    def _embed(self, texts: list[str], keys: list[str]) -> tuple[np.ndarray, int]:
        """Vectors for `texts`, encoding only those whose (model, text) hash is not cached."""
        cached = self.store.cached_vectors(keys)
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in cached}
        if todo:
            fresh = normalize_rows(self.embedder.encode(list(todo.values()), show_progress=self.show_progress))
            if fresh.shape != (len(todo), self.embedder.dimension):
                raise RetrievalError(f"embedder returned shape {fresh.shape}, expected "
                                     f"({len(todo)}, {self.embedder.dimension})")
            new = dict(zip(todo, fresh, strict=True))
            self.store.cache_vectors(new)
            cached.update(new)
        out = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = cached[key]
        return out, len(todo)

    def _remove_dense(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.dense.can_remove:
            self.dense.remove(ids)
        else:
            self._dense_stale = True  # HNSW: rebuilt from the store before the next search

    def _rollback(self) -> None:
        self.store.conn.rollback()
        self._rebuild_dense()
        self._bm25 = None

    def _rebuild_dense(self) -> None:
        ids = self.store.chunk_ids()
        kind = resolve_kind(self.index_kind, len(ids))
        dense = DenseIndex(self.embedder.dimension, kind)
        dense.rebuild(ids, self.store.vectors(ids, self.embedder.dimension))
        self.dense, self._dense_stale = dense, False

    def _refresh(self) -> None:
        n = len(self.dense) if not self._dense_stale else -1
        if (self._dense_stale or self.dense.kind != resolve_kind(self.index_kind, max(n, 0))
                or self.dense.needs_retrain()):
            self._rebuild_dense()
        if self._bm25 is None:
            ids, texts = self.store.chunk_texts()
            self._bm25 = BM25Index(ids, texts)

    # ---- search -------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, filter: Mapping[str, Any] | None = None, mode: Mode = "hybrid",
               mmr: bool = False, mmr_lambda: float = 0.5) -> list[Hit]:
        """Top-k chunks for `query`. `filter` ({key: value or [values]} on metadata, or on
        doc_id/title/source) is applied before ranking, so k hits come back whenever at
        least k chunks match. `mmr` re-ranks a deeper candidate pool for diversity."""
        return self.search_batch([query], k=k, filter=filter, mode=mode, mmr=mmr, mmr_lambda=mmr_lambda)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5, filter: Mapping[str, Any] | None = None,
                     mode: Mode = "hybrid", mmr: bool = False, mmr_lambda: float = 0.5) -> list[list[Hit]]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if isinstance(queries, str):
            raise TypeError("search_batch takes a list of queries")
        with self._lock:
            self._refresh()
            subset = self.store.filtered_ids(filter) if filter else None
            if subset is not None and len(subset) == 0:
                return [[] for _ in queries]
            need_vectors = mode != "bm25" or mmr
            qvecs = (normalize_rows(self.embedder.encode(list(queries))) if need_vectors and queries
                     else [None] * len(queries))
            return [self._search_one(q, v, k, subset, mode, mmr, mmr_lambda) for q, v in zip(queries, qvecs)]

    def _search_one(self, query: str, qvec: np.ndarray | None, k: int, subset: np.ndarray | None,
                    mode: str, mmr: bool, mmr_lambda: float) -> list[Hit]:
        depth = max(4 * k, 20) if mmr else k
        if mode == "dense":
            ids, scores = self._dense_search(qvec, depth, subset)
            ranked = list(zip(ids.tolist(), scores.tolist()))
        elif mode == "bm25":
            ids, scores = self._bm25.search(query, depth, subset)
            ranked = list(zip(ids.tolist(), scores.tolist()))
        else:
            depth = max(depth, HYBRID_DEPTH)
            dense_ids, _ = self._dense_search(qvec, depth, subset)
            bm25_ids, _ = self._bm25.search(query, depth, subset, positive_only=True)
            ranked = reciprocal_rank_fusion([dense_ids.tolist(), bm25_ids.tolist()], k=RRF_K)
        if mmr and ranked:
            cand = [i for i, _ in ranked]
            order = mmr_order(qvec, self.store.vectors(cand, self.embedder.dimension), k, mmr_lambda)
            ranked = [ranked[j] for j in order]
        ranked = ranked[:k]
        chunks = self.store.chunks([i for i, _ in ranked])
        return [Hit(chunk_id=str(i), doc_id=c.doc_id, title=c.title, source=c.source, text=c.text, start=c.start,
                    end=c.end, score=float(s), rank=r, metadata=c.metadata)
                for r, (i, s) in enumerate(ranked, start=1) for c in [chunks[i]]]

    def _dense_search(self, qvec: np.ndarray, n: int, subset: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if subset is None:
            return self.dense.search(qvec, n)
        if self.dense.kind == "flat":
            return self.dense.search(qvec, n, subset=subset)
        # Approximate indexes can miss filtered neighbours; score the matching subset exactly.
        scores = self.store.vectors(subset, self.embedder.dimension) @ qvec
        top = np.lexsort((subset, -scores))[:n]
        return subset[top], scores[top].astype(np.float32)

    # ---- persistence ----------------------------------------------------------------------
    def check_consistency(self) -> None:
        """Raise if the FAISS index and the store hold different chunk ids."""
        with self._lock:
            self._refresh()
            in_index, in_store = np.sort(self.dense.ids()), self.store.chunk_ids()
            if not np.array_equal(in_index, in_store):
                raise IndexFormatError(f"index and store disagree: {len(in_index)} vectors vs {len(in_store)} chunks")

    def manifest(self) -> dict[str, Any]:
        return {
            "embedder": {"name": self.embedder.name, "dimension": self.embedder.dimension,
                         "path": str(getattr(self.embedder, "path", "") or "")},
            "chunking": self.chunking.model_dump(),
            "index": {"requested": self.index_kind, "kind": self.dense.kind},
            "counts": {"documents": self.num_documents, "chunks": len(self)},
        }

    def save(self, folder: str | Path) -> Path:
        """Write the index to `folder` (replacing a previous index there) atomically."""
        folder = Path(folder)
        with self._lock:
            self._refresh()
            self.check_consistency()
            manifest = self.manifest()

            def write(tmp: Path) -> None:
                self.dense.write(tmp / INDEX_FILE)
                self.store.save_to(tmp / STORE_FILE)
                corpus = {"fingerprint": self.store.fingerprint(), "documents": self.num_documents,
                          "chunks": len(self)}
                write_manifest(tmp, manifest, corpus)  # last (it checksums the files): a folder without it is not an index

            save_atomically(folder, write)
        return folder

    @classmethod
    def load(cls, folder: str | Path, embedder: TextEmbedder | None = None, *, show_progress: bool = False) -> Retriever:
        """Open a saved index. Without `embedder`, the one named in the manifest is loaded;
        with one, it must be the embedder the index was built with. A folder that is not an
        index, is damaged, or whose files do not match its manifest raises IndexFormatError."""
        folder = Path(folder)
        recover(folder)
        manifest = read_manifest(folder)
        verify_files(folder, manifest)  # before any library parses the files
        name, dim = manifest.embedder.name, manifest.embedder.dimension
        if embedder is None:
            embedder = _manifest_embedder(folder, manifest)
        if embedder.name != name or embedder.dimension != dim:
            raise EmbedderMismatchError(
                f"index {folder} was built with embedder {name!r} (dimension {dim}) but was opened with "
                f"{embedder.name!r} (dimension {embedder.dimension}); use the same embedder or rebuild the index")
        try:
            self = cls(embedder, chunk_tokens=manifest.chunking.max_tokens, overlap=manifest.chunking.overlap,
                       index=manifest.index.requested, show_progress=show_progress)
            self.store = DocStore.load_from(folder / STORE_FILE)
            self.dense = DenseIndex.read(folder / INDEX_FILE, dim, manifest.index.kind)
            check_loaded(folder, manifest, self.store, self.dense)
        except (sqlite3.Error, RuntimeError, ValueError, MemoryError) as exc:  # RuntimeError: FAISS's errors
            raise IndexFormatError(f"{folder} is damaged: {_one_line(exc)}") from None
        self.check_consistency()
        warn_unverified(folder, manifest)
        return self

    def copy_cache_from(self, other: Retriever) -> int:
        """Reuse another index's embeddings (same embedder): unchanged text is not re-encoded."""
        if other.embedder.name != self.embedder.name:
            return 0
        self.store.copy_cache_from(other.store)
        self.store.conn.commit()
        return self.store.count_cached()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _manifest_embedder(folder: Path, manifest: Manifest) -> TextEmbedder:
    """The embedder an index names. Whatever a crafted embedder folder makes the model
    libraries raise becomes one IndexFormatError line."""
    name, path = manifest.embedder.name, manifest.embedder.path
    spec = None if name == DEFAULT_MODEL else (path if path and Path(path).is_dir() else name)
    try:
        return make_embedder(spec, name=name)
    except RetrievalError:
        raise
    except Exception as exc:  # noqa: BLE001 - sentence-transformers/transformers/torch raise many types
        raise IndexFormatError(f"{folder}: cannot load the embedder it was built with ({name!r}): "
                               f"{_one_line(exc)}") from None
