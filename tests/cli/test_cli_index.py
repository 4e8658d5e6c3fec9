"""`rankact index build|search` end to end, with the instant hashing embedder."""
from __future__ import annotations

import json

import pytest

from rankact.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "cats.md").write_text("# Cats\nCats purr and sleep most of the day.")
    (folder / "dogs.html").write_text("<html><head><title>Dogs</title><script>bark()</script></head>"
                                      "<body><p>Dogs bark at the mailman.</p></body></html>")
    (folder / "records.jsonl").write_text(
        json.dumps({"id": "fr", "text": "Paris is the capital of France", "lang": "fr"}) + "\n"
        + json.dumps({"id": "de", "text": "Berlin is the capital of Germany", "lang": "de"}) + "\n")
    (folder / "broken.jsonl").write_text('{"id": 1, "text": "fine"}\n{oops\n')
    return folder


def build(capsys, corpus, out, *extra):
    return run(capsys, "index", "build", corpus, "--out", out, "--embedder", "hashing-64", *extra)


def test_build_reports_counts_and_per_file_errors_then_search(capsys, corpus, tmp_path):
    code, out, err = build(capsys, corpus, tmp_path / "idx", "--chunk-tokens", "64", "--overlap", "4")
    assert code == 0, err
    assert "indexed 4 documents as 4 chunks" in out and "1 error(s)" in out
    assert "broken.jsonl: line 2: invalid JSON" in err
    code, out, err = run(capsys, "index", "search", tmp_path / "idx", "capital Germany", "-k", "1")
    assert code == 0, err
    assert "Berlin is the capital of Germany" in out
    code, out, _ = run(capsys, "index", "search", tmp_path / "idx", "capital", "--filter", "lang=fr", "--json",
                       "--mode", "bm25", "-k", "5")
    result = json.loads(out)
    assert result["query"] == "capital" and [h["doc_id"] for h in result["hits"]] == ["fr"]
    assert {"chunk_id", "source", "start", "end", "score", "rank", "metadata"} <= set(result["hits"][0])
    # rebuilding unchanged sources re-embeds nothing
    code, out, _ = build(capsys, corpus, tmp_path / "idx")
    assert code == 0 and "0 embedded, 4 from cache" in out


def test_batch_queries_print_one_json_line_each(capsys, corpus, tmp_path):
    build(capsys, corpus, tmp_path / "idx", "--index", "hnsw")
    queries = tmp_path / "q.txt"
    queries.write_text("cats purr\n\ndogs bark\nParis France\n")
    code, out, err = run(capsys, "index", "search", tmp_path / "idx", "--queries", queries, "--json", "-k", "2",
                         "--mode", "dense")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in lines] == ["cats purr", "dogs bark", "Paris France"]
    assert all(len(r["hits"]) == 2 for r in lines)
    assert lines[2]["hits"][0]["doc_id"] == "fr"


def test_user_errors_are_one_line(capsys, corpus, tmp_path):
    code, _, err = run(capsys, "index", "search", tmp_path / "missing", "q")
    assert code == 2 and err.strip() == f"error: no index at {tmp_path / 'missing'}: folder not found"
    (tmp_path / "plain").mkdir()
    code, _, err = run(capsys, "index", "search", tmp_path / "plain", "q")
    assert code == 2 and "not a retrieval index" in err and "Traceback" not in err
    build(capsys, corpus, tmp_path / "idx")
    code, _, err = run(capsys, "index", "search", tmp_path / "idx", "q", "--embedder", "hashing-32")
    assert code == 2 and "built with embedder 'hashing-64'" in err
    code, _, err = run(capsys, "index", "search", tmp_path / "idx", "q", "--filter", "novalue")
    assert code == 2 and "key=value" in err
    code, _, err = run(capsys, "index", "search", tmp_path / "idx", "q", "--mode", "magic")
    assert code == 2 and "mode must be one of" in err
    code, _, err = run(capsys, "index", "search", tmp_path / "idx")
    assert code == 2 and "QUERY or --queries" in err
    code, _, err = build(capsys, tmp_path / "nothing-here", tmp_path / "idx2")
    assert code == 2 and "nothing to index" in err
    code, _, err = build(capsys, corpus, tmp_path / "idx3", "--index", "lsh")
    assert code == 2 and "index must be one of" in err
    code, _, err = build(capsys, corpus, tmp_path / "idx4", "--overlap", "500")
    assert code == 2 and "overlap" in err
