"""Chunking by the embedder's tokenizer: budget respected, exact offsets, overlap, words kept whole."""
from __future__ import annotations

import itertools

import pytest

from rankact.retrieval import Document, HashingEmbedder, Retriever
from rankact.retrieval.chunking import chunk_spans


def test_windows_respect_budget_overlap_and_word_boundaries():
    # 10 words, each split into 2 tokens; word ids say which tokens belong together
    offsets = [(i * 4 + j * 2, i * 4 + j * 2 + 2) for i in range(10) for j in range(2)]
    word_ids = [i for i in range(10) for _ in range(2)]
    spans = chunk_spans(offsets, word_ids, budget=5, overlap=2)
    starts = [o[0] for o in offsets]
    ends = [o[1] for o in offsets]
    for span in spans:
        first, last = starts.index(span.start), ends.index(span.end)
        assert last - first + 1 <= 5
        assert first % 2 == 0 and last % 2 == 1  # never splits a word
    assert spans[0].start == 0 and spans[-1].end == offsets[-1][1]
    # consecutive windows overlap (share a word) and move forward
    for a, b in itertools.pairwise(spans):
        assert a.start < b.start < a.end


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="overlap"):
        chunk_spans([(0, 1)], None, budget=4, overlap=4)
    with pytest.raises(ValueError, match="budget"):
        chunk_spans([(0, 1)], None, budget=0, overlap=0)
    assert chunk_spans([], None, budget=4, overlap=1) == []
    with pytest.raises(ValueError, match="exceeds"):
        Retriever(HashingEmbedder(8, max_tokens=64), chunk_tokens=128)


def test_chunks_keep_exact_offsets_and_document_fields():
    embedder = HashingEmbedder(16)
    retriever = Retriever(embedder, chunk_tokens=12, overlap=3)
    text = " ".join(f"word{i}," for i in range(60))
    doc = Document(id="d", text=text, title="T", source="s.txt", metadata={"k": "v"})
    retriever.add([doc])
    chunks = retriever.store.chunks(retriever.store.chunk_ids()).values()
    assert len(chunks) > 5
    budget = 12 - embedder.special_tokens
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
        assert len(embedder.token_offsets(chunk.text)[0]) <= budget
        assert (chunk.doc_id, chunk.title, chunk.source, chunk.metadata) == ("d", "T", "s.txt", {"k": "v"})
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
