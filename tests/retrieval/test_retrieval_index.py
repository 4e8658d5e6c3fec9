"""Index mechanics with the instant hashing embedder: add/update/delete consistency, ids
never reused, filters before ranking, cosine scores, hybrid fusion, MMR, embedding cache."""
from __future__ import annotations

import numpy as np
import pytest

from rankact.retrieval import DocumentError, HashingEmbedder, Retriever

TOPICS = ["apple banana fruit", "engine wheel car", "planet star orbit", "violin piano music"]


def corpus(n: int = 40) -> list[dict]:
    return [{"id": f"d{i}", "text": f"{TOPICS[i % 4]} note number {i} " + "filler " * (i % 3),
             "title": f"Doc {i}", "source": f"src/{i}.txt", "metadata": {"topic": i % 4, "even": i % 2 == 0}}
            for i in range(n)]


@pytest.fixture
def retriever() -> Retriever:
    r = Retriever(HashingEmbedder(64), chunk_tokens=64, overlap=8)
    r.add(corpus())
    return r


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_returns_ranked_hits_with_fields(retriever, mode):
    hits = retriever.search("planet orbit", k=5, mode=mode)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(h.doc_id in {f"d{i}" for i in range(2, 40, 4)} for h in hits)  # the planet documents
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        doc = retriever.get_document(h.doc_id)
        assert doc.text[h.start:h.end] == h.text
        assert h.source == doc.source and h.title == doc.title and h.metadata == doc.metadata


def test_dense_scores_are_cosine_similarities(retriever):
    embedder = retriever.embedder
    hits = retriever.search("violin music", k=3, mode="dense")
    q = embedder.encode(["violin music"])[0]
    for h in hits:
        v = embedder.encode([h.text])[0]
        cosine = float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))
        assert h.score == pytest.approx(cosine, abs=1e-5)


def test_hybrid_is_rrf_of_dense_and_bm25(retriever):
    dense = [h.chunk_id for h in retriever.search("engine car", k=50, mode="dense")]
    bm25 = [h.chunk_id for h in retriever.search("engine car", k=50, mode="bm25")]
    bm25_pos = [h.chunk_id for h in retriever.search("engine car", k=50, mode="bm25") if h.score > 0]
    expected: dict[str, float] = {}
    for ranking in (dense, bm25_pos):
        for rank, cid in enumerate(ranking, start=1):
            expected[cid] = expected.get(cid, 0) + 1 / (60 + rank)
    hybrid = retriever.search("engine car", k=5, mode="hybrid")
    best = sorted(expected.values(), reverse=True)[:5]
    assert [h.score for h in hybrid] == pytest.approx(best)
    assert all(h.score == pytest.approx(expected[h.chunk_id]) for h in hybrid)
    assert len(bm25) >= len(bm25_pos)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_filters_apply_before_ranking_so_k_come_back(mode, kind):
    r = Retriever(HashingEmbedder(32), chunk_tokens=64, overlap=8, index=kind)
    r.add(corpus(200))
    # the query is about fruit; the filter keeps only music documents (50 of them)
    hits = r.search("apple banana fruit", k=7, filter={"topic": 3}, mode=mode)
    assert len(hits) == 7
    assert all(h.metadata["topic"] == 3 for h in hits)
    # list values mean any-of; strings match numbers (as typed on a command line)
    hits = r.search("apple", k=10, filter={"topic": ["1", 2], "even": True}, mode=mode)
    assert len(hits) == 10 and all(h.metadata["topic"] == 2 for h in hits)
    # fewer matches than k: all of them, no more
    assert len(r.search("apple", k=10, filter={"doc_id": ["d1", "d2"]}, mode=mode)) == 2
    assert r.search("apple", k=3, filter={"topic": 99}, mode=mode) == []


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_delete_then_readd_keeps_index_and_store_consistent(kind):
    r = Retriever(HashingEmbedder(32), chunk_tokens=64, overlap=8, index=kind)
    r.add(corpus())
    before = {h.chunk_id for h in r.search("planet orbit", k=40, mode="dense")}
    removed = r.delete(["d2", "d6"])
    assert removed == 2
    r.check_consistency()
    for mode in ("dense", "bm25", "hybrid"):
        assert not {h.doc_id for h in r.search("planet orbit", k=40, mode=mode)} & {"d2", "d6"}
    max_old = max(int(c) for c in before)
    r.add([{"id": "d2", "text": "planet star orbit comes back", "metadata": {"topic": 2}}])
    r.check_consistency()
    hits = {h.doc_id: h for h in r.search("planet orbit comes back", k=5, mode="dense")}
    assert "d2" in hits and "d6" not in hits
    assert int(hits["d2"].chunk_id) > max_old  # ids are never reused
    assert r.num_documents == 39 and len(r) == 39


def test_update_replaces_chunks_and_upsert_skips_unchanged():
    embedder = HashingEmbedder(32)
    r = Retriever(embedder, chunk_tokens=64, overlap=8)
    r.add(corpus(8))
    old_ids = {h.chunk_id for h in r.search("x", k=8, filter={"doc_id": "d1"}, mode="dense")}
    report = r.update([{"id": "d1", "text": "completely new violin text", "metadata": {"topic": 3}}])
    assert report.updated == ["d1"]
    r.check_consistency()
    new = r.search("x", k=8, filter={"doc_id": "d1"}, mode="dense")
    assert [h.text for h in new] == ["completely new violin text"]
    assert not {h.chunk_id for h in new} & old_ids
    report = r.upsert(corpus(8)[:3] + [{"id": "new", "text": "brand new"}])
    assert report.unchanged == ["d0", "d2"] and report.updated == ["d1"] and report.added == ["new"]


def test_mutation_errors_change_nothing():
    r = Retriever(HashingEmbedder(32), chunk_tokens=64, overlap=8)
    r.add(corpus(4))
    with pytest.raises(DocumentError, match="already exists"):
        r.add([{"id": "zzz", "text": "fresh"}, {"id": "d0", "text": "again"}])
    assert "zzz" not in r and len(r) == 4
    with pytest.raises(DocumentError, match="unknown document"):
        r.update([{"id": "nope", "text": "x"}])
    with pytest.raises(DocumentError, match="unknown document"):
        r.delete(["d0", "nope"])
    assert "d0" in r and len(r) == 4
    assert r.delete(["nope"], missing_ok=True) == 0
    with pytest.raises(DocumentError, match="no text"):
        r.add([{"id": "blank", "text": "  "}])
    with pytest.raises(ValueError, match="mode"):
        r.search("x", mode="sparse")
    with pytest.raises(ValueError, match="k must"):
        r.search("x", k=0)


def test_failure_inside_a_write_rolls_back_both_sides(monkeypatch):
    r = Retriever(HashingEmbedder(32), chunk_tokens=64, overlap=8)
    r.add(corpus(4))

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(r.dense, "add", boom)
    with pytest.raises(RuntimeError):
        r.update([{"id": "d0", "text": "replacement"}])
    r.check_consistency()
    assert r.get_document("d0").text.startswith("apple") and len(r) == 4
    assert r.search("apple", k=1, mode="dense")[0].doc_id == "d0"


def test_embedding_cache_skips_unchanged_text():
    embedder = HashingEmbedder(32)
    r = Retriever(embedder, chunk_tokens=64, overlap=8)
    r.add(corpus(10))
    assert embedder.encoded_texts == 10
    r.delete([f"d{i}" for i in range(10)])
    report = r.add(corpus(10))  # same texts again: all from the cache
    assert report.embedded == 0 and embedder.encoded_texts == 10
    r.update([{"id": "d0", "text": "one changed text"}])
    assert embedder.encoded_texts == 11
    fresh = Retriever(embedder, chunk_tokens=64, overlap=8)
    fresh.copy_cache_from(r)
    calls = embedder.encode_calls
    assert fresh.add(corpus(10)[1:]).embedded == 0 and embedder.encode_calls == calls


def test_mmr_diversifies():
    r = Retriever(HashingEmbedder(64), chunk_tokens=64, overlap=8)
    near_dupes = [{"id": f"dup{i}", "text": f"solar planet orbit star {'x' * i}"} for i in range(5)]
    r.add(near_dupes + [{"id": "other", "text": "planet rings of saturn"}])
    plain = r.search("planet orbit", k=3, mode="dense")
    diverse = r.search("planet orbit", k=3, mode="dense", mmr=True, mmr_lambda=0.3)
    assert "other" not in {h.doc_id for h in plain}
    assert "other" in {h.doc_id for h in diverse}
    assert diverse[0].doc_id == plain[0].doc_id


def test_auto_index_grows_from_flat_to_hnsw(monkeypatch):
    from rankact.retrieval import dense_index

    monkeypatch.setattr(dense_index, "AUTO_HNSW_AT", 30)
    r = Retriever(HashingEmbedder(32), chunk_tokens=64, overlap=8, index="auto")
    r.add(corpus(20))
    r.search("x", k=1)
    assert r.dense.kind == "flat"
    r.add([{"id": f"more{i}", "text": f"planet {i}"} for i in range(20)])
    hits = r.search("planet", k=5, mode="dense")
    assert r.dense.kind == "hnsw" and len(hits) == 5
    r.check_consistency()


def test_empty_index_searches_and_round_trips(tmp_path):
    r = Retriever(HashingEmbedder(16), chunk_tokens=32, overlap=4, index="hnsw")
    for mode in ("dense", "bm25", "hybrid"):
        assert r.search("anything", k=3, mode=mode) == []
    r.save(tmp_path / "empty")
    loaded = Retriever.load(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.search("anything") == []
    loaded.add([{"id": "a", "text": "now something"}])
    assert loaded.search("something", k=3)[0].doc_id == "a"
