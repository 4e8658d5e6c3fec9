"""The document store: documents, their chunks, the chunk-id counter and the embedding cache,
in one SQLite database (in memory while working; `save_to` writes a file). No pickle: metadata
is JSON text, vectors are raw float32 bytes."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankact.retrieval.documents import Chunk, Document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, title TEXT NOT NULL, source TEXT NOT NULL,
    text TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL, vec_key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""

Filter = Mapping[str, Any]
_FIELDS = ("doc_id", "title", "source")


def matches(filter_: Filter, doc_id: str, title: str, source: str, metadata: Mapping[str, Any]) -> bool:
    """All keys must match; a list value means any of its items. `doc_id`, `title` and
    `source` address the document's fields, other keys its metadata. Values also match by
    their string form, so filters typed on a command line (`year=2020`) work on numbers."""
    fields = {"doc_id": doc_id, "title": title, "source": source}
    for key, wanted in filter_.items():
        if key in fields:
            actual, present = fields[key], True
        else:
            present = key in metadata
            actual = metadata.get(key)
        if not present:
            return False
        options = wanted if isinstance(wanted, list | tuple | set) else [wanted]
        if not any(actual == w or str(actual) == str(w) for w in options):
            return False
    return True


class DocStore:
    def __init__(self, conn: sqlite3.Connection | None = None):
        # check_same_thread=False: tools run in worker threads; the Retriever serializes access.
        self.conn = conn or sqlite3.connect(":memory:", check_same_thread=False)
        self.conn.executescript(_SCHEMA)

    # ---- ids ------------------------------------------------------------------------
    def allocate_ids(self, n: int) -> list[int]:
        """n fresh chunk ids from a persisted monotonic counter: an id is never reused,
        even after its chunk is deleted, so a stale citation can never point at new text."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='next_id'").fetchone()
        first = int(row[0]) if row else 0
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', ?)", (str(first + n),))
        return list(range(first, first + n))

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ---- documents and chunks ---------------------------------------------------------
    def has_document(self, doc_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM documents WHERE doc_id=?", (doc_id,)).fetchone() is not None

    def document(self, doc_id: str) -> Document | None:
        row = self.conn.execute("SELECT doc_id, title, source, text, metadata FROM documents WHERE doc_id=?",
                                (doc_id,)).fetchone()
        if row is None:
            return None
        return Document(id=row[0], title=row[1], source=row[2], text=row[3], metadata=json.loads(row[4]))

    def insert_document(self, doc: Document, ids: Sequence[int], spans: Sequence[tuple[int, int]],
                        vec_keys: Sequence[str]) -> None:
        self.conn.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
                          (doc.id, doc.title, doc.source, doc.text, json.dumps(doc.metadata, default=str)))
        self.conn.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
            [(i, doc.id, s, e, doc.text[s:e], k) for i, (s, e), k in zip(ids, spans, vec_keys, strict=True)])

    def delete_document(self, doc_id: str) -> list[int]:
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE doc_id=?", (doc_id,))]
        self.conn.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
        self.conn.execute("DELETE FROM documents WHERE doc_id=?", (doc_id,))
        return ids

    def count_documents(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def count_chunks(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def chunk_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)

    def chunk_texts(self) -> tuple[np.ndarray, list[str]]:
        rows = self.conn.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids]
        out: dict[int, Chunk] = {}
        for part in _batches(ids):
            marks = ",".join("?" * len(part))
            sql = ('SELECT c.id, c.doc_id, d.title, d.source, c.text, c.start, c."end", d.metadata '
                   f"FROM chunks c JOIN documents d ON d.doc_id = c.doc_id WHERE c.id IN ({marks})")
            for r in self.conn.execute(sql, part):
                out[r[0]] = Chunk(id=r[0], doc_id=r[1], title=r[2], source=r[3], text=r[4], start=r[5],
                                  end=r[6], metadata=json.loads(r[7]))
        return out

    def vectors(self, ids: Sequence[int], dimension: int) -> np.ndarray:
        """The stored vectors of these chunks, in the order given."""
        found: dict[int, bytes] = {}
        for part in _batches([int(i) for i in ids]):
            marks = ",".join("?" * len(part))
            sql = ("SELECT c.id, e.vector FROM chunks c JOIN embeddings e ON e.key = c.vec_key "
                   f"WHERE c.id IN ({marks})")
            found.update(self.conn.execute(sql, part).fetchall())
        out = np.zeros((len(ids), dimension), dtype=np.float32)
        for row, i in enumerate(ids):
            out[row] = np.frombuffer(found[int(i)], dtype=np.float32)
        return out

    def filtered_ids(self, filter_: Filter) -> np.ndarray:
        """Ids of the chunks whose document matches the filter (checked per document)."""
        docs = [r[0] for r in self.conn.execute("SELECT doc_id, title, source, metadata FROM documents")
                if matches(filter_, r[0], r[1], r[2], json.loads(r[3]))]
        ids: list[int] = []
        for part in _batches(docs):
            marks = ",".join("?" * len(part))
            ids.extend(r[0] for r in self.conn.execute(f"SELECT id FROM chunks WHERE doc_id IN ({marks})", part))
        return np.array(sorted(ids), dtype=np.int64)

    # ---- integrity ------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 over every document and chunk as stored (texts, metadata, offsets, the key of
        each chunk's embedding): what the corpus is, for the manifest. One pass over the rows."""
        digest = hashlib.sha256()
        for sql in ("SELECT doc_id, title, source, text, metadata FROM documents ORDER BY doc_id",
                    'SELECT id, doc_id, start, "end", vec_key, text FROM chunks ORDER BY id'):
            for row in self.conn.execute(sql):
                digest.update("\x1f".join(map(str, row)).encode("utf-8", "surrogatepass") + b"\x1e")
            digest.update(b"\x1d")
        return digest.hexdigest()

    def problem(self, dimension: int) -> str | None:
        """What is wrong with a store read from a file, or None: rows a search would trip on
        later (a vector of another size, a chunk without its document or its vector,
        metadata that is not a JSON object)."""
        q = self.conn.execute
        if q("SELECT COUNT(*) FROM embeddings WHERE typeof(vector) != 'blob' OR length(vector) != ?",
             (4 * dimension,)).fetchone()[0]:
            return f"stored vectors are not {dimension}-dimensional float32"
        if q("SELECT COUNT(*) FROM chunks c LEFT JOIN embeddings e ON e.key = c.vec_key "
             "WHERE e.key IS NULL").fetchone()[0]:
            return "chunks without a stored vector"
        if q("SELECT COUNT(*) FROM chunks c LEFT JOIN documents d ON d.doc_id = c.doc_id "
             "WHERE d.doc_id IS NULL").fetchone()[0]:
            return "chunks without a document"
        if q("SELECT COUNT(*) FROM chunks WHERE typeof(id) != 'integer' OR typeof(text) != 'text' "
             'OR typeof(start) != \'integer\' OR typeof("end") != \'integer\'').fetchone()[0]:
            return "chunks with fields of the wrong type"
        if q("SELECT COUNT(*) FROM documents WHERE typeof(doc_id) != 'text' OR typeof(title) != 'text' "
             "OR typeof(source) != 'text' OR typeof(text) != 'text'").fetchone()[0]:
            return "documents with fields of the wrong type"
        for (meta,) in q("SELECT metadata FROM documents"):
            try:
                if not isinstance(json.loads(meta), dict):
                    return "document metadata that is not a JSON object"
            except (TypeError, ValueError, RecursionError):
                return "document metadata that is not JSON"
        return None

    # ---- embedding cache ----------------------------------------------------------------
    def cached_vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in _batches(list(set(keys))):
            marks = ",".join("?" * len(part))
            for key, blob in self.conn.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", part):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def cache_vectors(self, items: Mapping[str, np.ndarray]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                              [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])

    def count_cached(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    def copy_cache_from(self, other: DocStore) -> None:
        rows = other.conn.execute("SELECT key, vector FROM embeddings").fetchall()
        self.conn.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?)", rows)

    # ---- files ---------------------------------------------------------------------------
    def save_to(self, path: Path) -> None:
        self.conn.commit()
        target = sqlite3.connect(str(path))
        try:
            self.conn.backup(target)
        finally:
            target.close()

    @classmethod
    def load_from(cls, path: Path) -> DocStore:
        """Copy the file into memory, so the folder on disk stays untouched until the next save."""
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            source.backup(conn)
        finally:
            source.close()
        return cls(conn)


def _batches(items: list, size: int = 900) -> Iterable[list]:  # SQLite caps bound parameters
    for i in range(0, len(items), size):
        yield items[i:i + size]
