"""Fuzz over index folders (issue 15): seeded random damage to the manifest's values and
to the two files, with and without the checksums fixed up afterwards. Every outcome is
either a `RetrievalError` (one line in the CLI) or an index that answers only with the
text of its own corpus; nothing else may escape."""
from __future__ import annotations

import copy
import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest

from rankact.retrieval import HashingEmbedder, RetrievalError, Retriever

TEXTS_A = [f"cats purr number {i} on the mat" for i in range(12)]
TEXTS_B = [f"stocks fall number {i} in spring" for i in range(12)]
VALUES = [None, True, -1, 0, 1, 7, 2**31, 2**70, 1e308, 0.5, "", "x", "16", "hnsw", "flat", "ivf", "auto",
          "hashing-16", "hashing-8", "/", [], {}, [[[]]], {"a": {"b": {}}}, "0" * 64, "g" * 64]


def build(folder: Path, texts: list[str], kind: str) -> Path:
    r = Retriever(HashingEmbedder(16), chunk_tokens=32, overlap=4, index=kind)
    r.add([{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    r.save(folder)
    return folder


def paths(value, prefix=()):
    """Every key path in a JSON value (containers and leaves)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))


def mutate_manifest(manifest: dict, rng: random.Random) -> dict:
    manifest = copy.deepcopy(manifest)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in paths(manifest) if p])
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(VALUES)
        if not path[:-1] or not isinstance(parent, dict):
            break
    return manifest


def mutate_file(data: bytes, other: bytes, rng: random.Random) -> bytes:
    op = rng.choice(["flip", "truncate", "append", "other", "empty", "int"])
    buf = bytearray(data)
    if op == "flip":
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == "truncate":
        buf = buf[: rng.randrange(len(buf))]
    elif op == "append":
        buf += rng.randbytes(rng.randint(1, 64))
    elif op == "other":
        buf = bytearray(other)
    elif op == "empty":
        buf = bytearray()
    else:
        at = rng.randrange(max(1, len(buf) - 8))
        buf[at:at + 8] = rng.choice([2**63 - 1, 2**40, 0, 2**32 + 5]).to_bytes(8, "little")
    return bytes(buf)


def resign(folder: Path, manifest: dict) -> None:
    if isinstance(manifest.get("files"), dict):
        for name in ("dense.faiss", "store.sqlite"):
            data = (folder / name).read_bytes()
            manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def fuzz(tmp_path: Path, kind: str, rounds: int, seed: int) -> dict[str, int]:
    a, b = build(tmp_path / "a", TEXTS_A, kind), build(tmp_path / "b", TEXTS_B, kind)
    manifest = json.loads((a / "manifest.json").read_text())
    files = {n: ((a / n).read_bytes(), (b / n).read_bytes()) for n in ("dense.faiss", "store.sqlite")}
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for _ in range(rounds):
        folder = tmp_path / "x"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(a, folder)
        spoiled = copy.deepcopy(manifest)
        what = rng.choice(["manifest", "file", "both"])
        if what != "file":
            spoiled = mutate_manifest(spoiled, rng)
        if what != "manifest":
            name = rng.choice(list(files))
            (folder / name).write_bytes(mutate_file(*files[name], rng))
            if rng.random() < 0.5:
                resign(folder, spoiled)
        (folder / "manifest.json").write_text(json.dumps(spoiled))
        try:
            loaded = Retriever.load(folder)
            hits = [h for mode in ("dense", "bm25", "hybrid") for h in loaded.search("cats number", k=3, mode=mode)]
        except RetrievalError:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            continue
        assert all(h.text in TEXTS_A for h in hits), [h.text for h in hits]  # never another corpus's text
        outcomes["loaded"] = outcomes.get("loaded", 0) + 1
    return outcomes


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_fuzzed_index_folders_are_refused_in_one_error_or_answer_from_their_own_corpus(tmp_path, kind):
    outcomes = fuzz(tmp_path, kind, rounds=150, seed=15)
    assert outcomes.get("refused", 0) > 50  # the fuzz does reach the checks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_fuzzed_index_folders_many(tmp_path, kind):
    fuzz(tmp_path, kind, rounds=2000, seed=1515)
