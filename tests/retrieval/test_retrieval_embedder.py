"""The real all-MiniLM-L6-v2 from the installed package (offline): normalized vectors,
cosine scores, chunks within its 256-token limit by its own tokenizer, cache hits."""
from __future__ import annotations

import numpy as np
import pytest

from rankact.retrieval import Embedder, RetrievalError, Retriever
from rankact.retrieval.embedder import default_model_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_packaged_model_loads_offline_and_encodes_normalized(embedder):
    assert default_model_path().is_dir() and (default_model_path() / "modules.json").is_file()
    assert (embedder.name, embedder.dimension, embedder.max_tokens, embedder.special_tokens) == (
        "all-MiniLM-L6-v2", 384, 256, 2)
    vectors = embedder.encode(["a cat sleeps", "stock markets fell", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors[:2], axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    with pytest.raises(RetrievalError, match="never downloaded"):
        Embedder("sentence-transformers/some-other-model")


def test_real_chunks_fit_the_model_and_scores_are_cosine(embedder):
    from sentence_transformers import util

    long_text = " ".join(f"Sentence {i} talks about unbelievably antidisestablishmentarian topics." for i in range(60))
    r = Retriever(embedder, chunk_tokens=256, overlap=32)
    r.add([{"id": "long", "text": long_text, "title": "Long"},
           {"id": "cats", "text": "Cats are small domesticated felines that purr."},
           {"id": "cars", "text": "The engine of a car burns fuel to turn the wheels."}])
    chunks = r.store.chunks(r.store.chunk_ids()).values()
    long_chunks = [c for c in chunks if c.doc_id == "long"]
    assert len(long_chunks) > 3
    for c in long_chunks:
        assert long_text[c.start:c.end] == c.text
        assert len(embedder.tokenizer(c.text)["input_ids"]) <= 256  # [CLS] and [SEP] included
    hits = r.search("a pet kitten", k=2, mode="dense")
    assert hits[0].doc_id == "cats"
    expected = util.cos_sim(embedder.model.encode("a pet kitten"), embedder.model.encode(hits[0].text)).item()
    assert hits[0].score == pytest.approx(expected, abs=1e-4)
    calls = embedder.encode_calls
    r.upsert([{"id": "cats2", "text": "Cats are small domesticated felines that purr."}])
    assert embedder.encode_calls == calls  # only the query encodes would add calls; the text was cached
