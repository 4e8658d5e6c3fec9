"""Loaders: every supported format, folders, globs, Python objects, and bad files reported
one by one while the rest still loads."""
from __future__ import annotations

import json

from rankact.retrieval import Document, load_documents


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_each_format_loads_with_title_source_and_metadata(tmp_path):
    _write(tmp_path / "a.txt", "plain words here")
    _write(tmp_path / "b.md", "intro\n# The Title\nbody text")
    _write(tmp_path / "c.html", "<html><head><title>Page</title><style>p{color:red}</style>"
                                "<script>var hidden = 1;</script></head><body><h1>Head</h1><p>Seen text</p>"
                                "<noscript>no js</noscript></body></html>")
    _write(tmp_path / "d.jsonl", json.dumps({"id": 7, "text": "record text", "title": "T", "source": "src",
                                             "metadata": {"year": 2020}, "lang": "en"}) + "\n\n")
    report = load_documents(tmp_path)
    assert report.errors == []
    docs = {d.source if d.source != "src" else "d": d for d in report.documents}
    assert docs[str(tmp_path / "a.txt")].text == "plain words here"
    assert docs[str(tmp_path / "a.txt")].title == "a"
    assert docs[str(tmp_path / "b.md")].title == "The Title"
    html = docs[str(tmp_path / "c.html")]
    assert html.title == "Page"
    assert "Seen text" in html.text and "Head" in html.text
    assert "hidden" not in html.text and "color" not in html.text and "no js" not in html.text
    record = docs["d"]
    assert (record.id, record.text, record.title) == ("7", "record text", "T")
    assert record.metadata == {"year": 2020, "lang": "en"}


def test_malformed_files_are_reported_and_the_rest_loads(tmp_path):
    _write(tmp_path / "good.txt", "fine")
    _write(tmp_path / "bad.jsonl", '{"id": "x", "text": "ok"}\n{not json\n')
    _write(tmp_path / "norecord.jsonl", '{"text": "no id"}\n')
    _write(tmp_path / "latin.txt", "caf\xe9 au lait", encoding="latin-1")
    _write(tmp_path / "empty.md", "   \n")
    report = load_documents(tmp_path)
    assert [d.text for d in report.documents] == ["fine"]
    errors = {e.source.rsplit("/", 1)[-1]: e.message for e in report.errors}
    assert set(errors) == {"bad.jsonl", "norecord.jsonl", "latin.txt", "empty.md"}
    assert "line 2" in errors["bad.jsonl"] and "invalid JSON" in errors["bad.jsonl"]
    assert "'id'" in errors["norecord.jsonl"]
    assert "UTF-8" in errors["latin.txt"]


def test_globs_objects_missing_paths_and_duplicates(tmp_path):
    _write(tmp_path / "x" / "one.md", "one")
    _write(tmp_path / "x" / "two.txt", "two")
    _write(tmp_path / "x" / ".hidden" / "three.txt", "hidden")
    report = load_documents([
        str(tmp_path / "x" / "*.md"),
        Document(id="obj", text="from an object"),
        {"id": "rec", "text": "from a dict", "topic": "t"},
        {"id": "obj", "text": "duplicate id"},
        {"text": "no id"},
        tmp_path / "missing.txt",
        str(tmp_path / "nomatch*.txt"),
        tmp_path / "x" / "two.txt",
    ])
    assert [d.text for d in report.documents] == ["one", "from an object", "from a dict", "two"]
    assert report.documents[2].metadata == {"topic": "t"}
    messages = " | ".join(e.message for e in report.errors)
    assert "duplicate document id 'obj'" in messages
    assert "no such file" in messages and "matched no files" in messages and "missing 'id'" in messages
    # the folder walk skips hidden folders
    assert all("hidden" not in d.text for d in load_documents(tmp_path / "x").documents)


def test_unsupported_file_named_explicitly_is_an_error(tmp_path):
    path = _write(tmp_path / "data.csv", "a,b")
    report = load_documents(path)
    assert report.documents == [] and "unsupported file type '.csv'" in report.errors[0].message
