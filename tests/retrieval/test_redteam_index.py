"""Red team, issue 15 failure 9 (and failure 10's `collect --index` case): crafted index
folders. Before: `rankact index search` printed tracebacks for a deeply nested manifest,
`"chunking": null`, a Flat index file labelled `hnsw`, a crafted embedder folder, ...; and
a `dense.faiss` or `store.sqlite` copied from another corpus with the same dimension and
chunk ids loaded silently and answered wrongly. Now each is one `error:` line (exit 2)."""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from rankact.cli.main import main
from rankact.retrieval import HashingEmbedder, IndexFormatError, RetrievalError, Retriever


def build(folder: Path, texts: list[str], kind: str = "flat") -> Path:
    r = Retriever(HashingEmbedder(16), chunk_tokens=32, overlap=4, index=kind)
    r.add([{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    r.save(folder)
    return folder


def edit_manifest(folder: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def resign(folder: Path) -> None:
    """What a crafter who also fixes the checksums does: the deeper checks must still hold."""
    edit_manifest(folder, lambda m: m.__setitem__(
        "files", {n: file_entry(folder / n) for n in ("dense.faiss", "store.sqlite")}))


def as_legacy(folder: Path) -> None:
    """An index saved before checksums existed."""
    edit_manifest(folder, lambda m: (m.pop("files", None), m.pop("corpus", None)))


def sql(folder: Path, statement: str) -> None:
    conn = sqlite3.connect(folder / "store.sqlite")
    conn.execute(statement)
    conn.commit()
    conn.close()


def embedder_folder(folder: Path, files: dict[str, str]) -> None:
    emb = folder.parent / f"{folder.name}-embedder"
    emb.mkdir()
    for name, text in files.items():
        (emb / name).write_text(text)
    edit_manifest(folder, lambda m: m["embedder"].update(name="crafted", path=str(emb)))


def flat_file_without_id_map(folder: Path) -> None:
    index = faiss.IndexFlatIP(16)
    index.add(np.zeros((3, 16), dtype=np.float32))
    faiss.write_index(index, str(folder / "dense.faiss"))


# name -> how to spoil a copy of index A (B is another corpus of the same size and dimension)
CRAFTS: dict[str, Callable[[Path, Path], object]] = {
    "deeply nested manifest": lambda f, b: (f / "manifest.json").write_text(
        '{"format": "rankact-retrieval", "format_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "chunking null": lambda f, b: edit_manifest(f, lambda m: m.__setitem__("chunking", None)),
    "index null": lambda f, b: edit_manifest(f, lambda m: m.__setitem__("index", None)),
    "flat labelled hnsw": lambda f, b: edit_manifest(f, lambda m: m["index"].__setitem__("kind", "hnsw")),
    "flat labelled ivf": lambda f, b: edit_manifest(f, lambda m: m["index"].__setitem__("kind", "ivf")),
    "dimension as text": lambda f, b: edit_manifest(f, lambda m: m["embedder"].__setitem__("dimension", "16")),
    "huge dimension": lambda f, b: edit_manifest(f, lambda m: m["embedder"].update(
        name="hashing-4000000000", dimension=4_000_000_000)),
    "overlap 10**400": lambda f, b: edit_manifest(f, lambda m: m["chunking"].__setitem__("overlap", 10**400)),
    "manifest over 1 MB": lambda f, b: edit_manifest(f, lambda m: m.__setitem__("pad", "x" * 2_000_000)),
    "manifest not UTF-8": lambda f, b: (f / "manifest.json").write_bytes(b"\xff\xfe{}"),
    "checksum not hex": lambda f, b: edit_manifest(f, lambda m: m["files"]["dense.faiss"].__setitem__("sha256", "z")),
    "embedder folder with a foreign module": lambda f, b: embedder_folder(
        f, {"modules.json": '[{"idx": 0, "name": "0", "path": "", "type": "os.path"}]'}),
    "embedder folder with a config only": lambda f, b: embedder_folder(
        f, {"config.json": '{"model_type": "bert", "hidden_size": -1}'}),
    "dense.faiss of another corpus": lambda f, b: shutil.copy(b / "dense.faiss", f / "dense.faiss"),
    "store.sqlite of another corpus": lambda f, b: shutil.copy(b / "store.sqlite", f / "store.sqlite"),
    "dense.faiss garbage": lambda f, b: (f / "dense.faiss").write_bytes(b"IxM2" + b"\0" * 60),
    "dense.faiss without id map": lambda f, b: flat_file_without_id_map(f),
    "store vectors cut short": lambda f, b: sql(f, "UPDATE embeddings SET vector = x'00'"),
    "store metadata not JSON": lambda f, b: sql(f, "UPDATE documents SET metadata = '{oops'"),
    "store chunk of no document": lambda f, b: sql(f, "UPDATE chunks SET doc_id = 'ghost' WHERE id = 0"),
}
# the file crafts again, with the checksums fixed up by the crafter, and as an old index
FILE_CRAFTS = [name for name in CRAFTS if name.startswith(("dense.faiss", "store"))]
CASES = ([(name, None) for name in CRAFTS] + [(name, resign) for name in FILE_CRAFTS]
         + [(name, as_legacy) for name in FILE_CRAFTS])


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("indexes")
    a = build(root / "a", ["cats purr on the mat", "dogs bark at night", "fish swim in the sea"])
    b = build(root / "b", ["stocks fall in spring", "bonds rise in autumn", "gold shines all year"])
    return a, b


def crafted(indexes, tmp_path: Path, name: str, after: Callable[[Path], None] | None) -> Path:
    a, b = indexes
    folder = tmp_path / "crafted"
    shutil.copytree(a, folder)
    CRAFTS[name](folder, b)
    if after is not None:
        after(folder)
    return folder


def one_error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("name, after", CASES, ids=[f"{n}{'+' + a.__name__ if a else ''}" for n, a in CASES])
def test_index_search_on_a_crafted_folder_is_one_error_line(indexes, tmp_path, capsys, name, after):
    folder = crafted(indexes, tmp_path, name, after)
    with pytest.raises(RetrievalError):
        Retriever.load(folder)
    line = one_error_line(capsys, ["index", "search", str(folder), "cats"])
    assert str(folder) in line


@pytest.mark.parametrize("name", ["chunking null", "flat labelled hnsw", "dense.faiss of another corpus",
                                  "store.sqlite of another corpus", "embedder folder with a config only"])
def test_collect_with_a_crafted_index_is_one_error_line(indexes, tmp_path, capsys, name):
    folder = crafted(indexes, tmp_path, name, None)
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Final Answer: 4"] * 4))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t", "question": "2+2?", "answers": ["4"]}) + "\n")
    line = one_error_line(capsys, ["collect", str(tasks), "--samples", "1", "--db", f"sqlite:///{tmp_path / 'c.db'}",
                                   "--model", f"scripted:{script}", "--index", str(folder)])
    assert str(folder) in line


def test_collect_on_a_folder_that_is_not_an_index(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an index")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t", "question": "2+2?", "answers": ["4"]}) + "\n")
    line = one_error_line(capsys, ["collect", str(tasks), "--samples", "1", "--db", f"sqlite:///{tmp_path / 'c.db'}",
                                   "--model", "scripted:" + str(tmp_path / "none.json"), "--index", str(folder)])
    assert "not a retrieval index" in line


@pytest.mark.parametrize("copied", ["dense.faiss", "store.sqlite"])
@pytest.mark.parametrize("after", [None, resign, as_legacy], ids=["checksums", "resigned", "legacy"])
def test_a_file_from_another_corpus_never_answers(indexes, tmp_path, copied, after):
    name = f"{copied} of another corpus"
    folder = crafted(indexes, tmp_path, name, after)
    expected = {None: "does not match the checksum", resign: "another corpus|different vectors",
                as_legacy: "different vectors"}[after]
    with pytest.raises(IndexFormatError, match=expected):
        Retriever.load(folder)


def test_an_index_without_checksums_loads_with_one_warning(indexes, tmp_path, caplog):
    folder = tmp_path / "old"
    shutil.copytree(indexes[0], folder)
    as_legacy(folder)
    with caplog.at_level("WARNING", logger="rankact.retrieval"):
        hits = Retriever.load(folder).search("cats", k=1)
    assert hits[0].doc_id == "d0"
    assert [r.getMessage() for r in caplog.records if "no checksums" in r.getMessage()]


def test_a_damaged_old_index_prints_only_its_error_in_a_real_process(indexes, tmp_path):
    """The warning for an index without checksums goes through logging; a damaged one must
    still print exactly one line (checked outside pytest's log capture)."""
    import subprocess
    import sys

    folder = crafted(indexes, tmp_path, "dense.faiss of another corpus", as_legacy)
    done = subprocess.run([sys.executable, "-m", "rankact.cli", "index", "search", str(folder), "cats"],
                          check=False, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
