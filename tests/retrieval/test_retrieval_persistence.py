"""save/load: identical results after a round trip, a clear refusal of another embedder or
of a folder that is not an index, and a save that dies midway leaves the old index loadable."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rankact.retrieval import EmbedderMismatchError, HashingEmbedder, IndexFormatError, Retriever, store_io
from rankact.retrieval import manifest as manifest_module
from rankact.retrieval.docstore import DocStore


def docs(n: int, tag: str = "") -> list[dict]:
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    return [{"id": f"d{i}", "text": f"{words[i % 5]} {words[(i * 3) % 5]} item {i} {tag}",
             "metadata": {"group": i % 3}} for i in range(n)]


def results(r: Retriever) -> list:
    out = []
    for mode in ("dense", "bm25", "hybrid"):
        for query in ("alpha beta", "omega item", "gamma"):
            out.append([h.model_dump() for h in r.search(query, k=6, mode=mode)])
            out.append([h.model_dump() for h in r.search(query, k=4, mode=mode, filter={"group": 1})])
    return out


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_round_trip_gives_identical_results(tmp_path, kind):
    r = Retriever(HashingEmbedder(32), chunk_tokens=32, overlap=4, index=kind)
    r.add(docs(60))
    r.delete(["d3"])
    r.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["embedder"] == {"name": "hashing-32", "dimension": 32, "path": ""}
    assert manifest["chunking"] == {"max_tokens": 32, "overlap": 4}
    assert manifest["index"]["kind"] == kind and manifest["format_version"] == 1
    assert "faiss-cpu" in manifest["versions"]
    loaded = Retriever.load(tmp_path / "idx")  # embedder recreated from the manifest
    assert results(loaded) == results(r)
    # the id counter persists: an id freed before the save is not given out after the load
    loaded.add([{"id": "new", "text": "fresh alpha"}])
    new_id = loaded.search("fresh", k=1, filter={"doc_id": "new"})[0].chunk_id
    assert int(new_id) == 60


def test_no_pickle_in_saved_files_or_sources(tmp_path):
    r = Retriever(HashingEmbedder(16), chunk_tokens=32, overlap=4)
    r.add(docs(5))
    r.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["dense.faiss", "manifest.json", "store.sqlite"]
    package = Path(store_io.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import pickle" not in text and "joblib" not in text and "np.load(" not in text, source


def test_loading_with_another_embedder_fails_clearly(tmp_path):
    r = Retriever(HashingEmbedder(32), chunk_tokens=32, overlap=4)
    r.add(docs(5))
    r.save(tmp_path / "idx")
    with pytest.raises(EmbedderMismatchError, match="built with embedder 'hashing-32'.*'hashing-16'"):
        Retriever.load(tmp_path / "idx", HashingEmbedder(16))
    with pytest.raises(EmbedderMismatchError, match="'other'"):
        Retriever.load(tmp_path / "idx", HashingEmbedder(32, name="other"))


def test_not_an_index_and_damaged_folders(tmp_path):
    with pytest.raises(IndexFormatError, match="folder not found"):
        Retriever.load(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(IndexFormatError, match="not a retrieval index"):
        Retriever.load(tmp_path / "plain")
    r = Retriever(HashingEmbedder(16), chunk_tokens=32, overlap=4)
    r.add(docs(5))
    with pytest.raises(IndexFormatError, match="refusing to replace"):
        r.save(tmp_path / "plain")  # never clobbers a user's folder
    assert (tmp_path / "plain" / "notes.txt").read_text() == "mine"
    r.save(tmp_path / "idx")
    (tmp_path / "idx" / "dense.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFormatError, match="damaged"):
        Retriever.load(tmp_path / "idx")
    r.save(tmp_path / "idx2")
    manifest = json.loads((tmp_path / "idx2" / "manifest.json").read_text())
    (tmp_path / "idx2" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(IndexFormatError, match="version 99"):
        Retriever.load(tmp_path / "idx2")


def test_store_and_index_out_of_step_is_detected(tmp_path):
    r = Retriever(HashingEmbedder(16), chunk_tokens=32, overlap=4)
    r.add(docs(5))
    r.save(tmp_path / "a")
    r.add([{"id": "extra", "text": "one more"}])
    r.save(tmp_path / "b")
    os.replace(tmp_path / "b" / "dense.faiss", tmp_path / "a" / "dense.faiss")  # index of b, store of a
    with pytest.raises(IndexFormatError, match="dense.faiss does not match the checksum"):
        Retriever.load(tmp_path / "a")
    # an index saved before checksums existed: the ids are still compared on load
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    del manifest["files"], manifest["corpus"]
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="disagree"):
        Retriever.load(tmp_path / "a")


@pytest.mark.parametrize("fail_in", ["store", "manifest"])
def test_interrupted_save_leaves_previous_index_loadable(tmp_path, monkeypatch, fail_in):
    r = Retriever(HashingEmbedder(32), chunk_tokens=32, overlap=4)
    r.add(docs(20))
    r.save(tmp_path / "idx")
    expected = results(Retriever.load(tmp_path / "idx"))
    r.add([{"id": "later", "text": "alpha later addition"}])

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    if fail_in == "store":
        monkeypatch.setattr(DocStore, "save_to", crash)
    else:
        monkeypatch.setattr(manifest_module.json, "dumps", crash)
    with pytest.raises(KeyboardInterrupt):
        r.save(tmp_path / "idx")
    monkeypatch.undo()
    loaded = Retriever.load(tmp_path / "idx")
    assert "later" not in loaded and results(loaded) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # the half-written folder is gone
    r.save(tmp_path / "idx")  # and the next save works
    assert "later" in Retriever.load(tmp_path / "idx")


def test_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    r = Retriever(HashingEmbedder(32), chunk_tokens=32, overlap=4)
    r.add(docs(10))
    r.save(tmp_path / "idx")
    expected = results(Retriever.load(tmp_path / "idx"))
    r.add([{"id": "later", "text": "alpha later"}])
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == 2:  # old index moved aside, new one not yet in place: die here
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(store_io.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        r.save(tmp_path / "idx")
    monkeypatch.undo()
    assert not (tmp_path / "idx").exists()
    loaded = Retriever.load(tmp_path / "idx")  # puts the previous index back
    assert results(loaded) == expected and (tmp_path / "idx" / "manifest.json").is_file()
