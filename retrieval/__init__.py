"""Retrieval: loaders, chunking, embedder, FAISS + BM25 index with a SQLite store, fusion.

    from rankact.retrieval import Retriever
    r = Retriever()                      # all-MiniLM-L6-v2 from the installed package, flat index
    r.index(["docs/", "notes/*.md"])     # or r.add([{"id": ..., "text": ..., "title": ..., "metadata": {...}}])
    hits = r.search("query", k=5, filter={"lang": "en"}, mode="hybrid")   # dense | bm25 | hybrid
    r.save("my-index"); r = Retriever.load("my-index")

Tests and demos can pass `HashingEmbedder()` (instant, no model). Imports nothing else of
rankact's (the arrows point alignment -> agent -> retrieval)."""
from rankact.retrieval.documents import Chunk, Document, Hit, LoadError, LoadReport
from rankact.retrieval.embedder import Embedder, TextEmbedder, make_embedder
from rankact.retrieval.errors import DocumentError, EmbedderMismatchError, IndexFormatError, RetrievalError
from rankact.retrieval.hashing_embedder import HashingEmbedder
from rankact.retrieval.loaders import load_documents
from rankact.retrieval.retriever import IndexReport, Retriever, WriteReport

__all__ = [
    "Chunk",
    "Document",
    "DocumentError",
    "Embedder",
    "EmbedderMismatchError",
    "HashingEmbedder",
    "Hit",
    "IndexFormatError",
    "IndexReport",
    "LoadError",
    "LoadReport",
    "RetrievalError",
    "Retriever",
    "TextEmbedder",
    "WriteReport",
    "load_documents",
    "make_embedder",
]
