"""The agent's `search` tool: numbered passages with title and source, and citations."""
from __future__ import annotations

import pytest

from rankact.retrieval import HashingEmbedder, Retriever
from rankact.tools import get_builtin
from rankact.tools.base import ToolArgumentError
from rankact.tools.search import SearchTool, search_tool


@pytest.fixture
def retriever() -> Retriever:
    r = Retriever(HashingEmbedder(64), chunk_tokens=64, overlap=8)
    r.add([
        {"id": "paris", "text": "Paris is the capital of France.", "title": "Paris", "source": "wiki/Paris"},
        {"id": "berlin", "text": "Berlin is the capital of Germany.", "title": "Berlin", "source": "wiki/Berlin"},
        {"id": "notitle", "text": "Rome is the capital of Italy " + "and more words " * 80},
    ])
    return r


def test_passages_are_numbered_with_title_and_source_and_cited(retriever):
    tool = SearchTool(retriever, k=2, mode="hybrid")
    result = tool.invoke("capital of France")  # plain text works: one string argument
    lines = result.text.splitlines()
    assert lines[0] == "[1] (Paris — wiki/Paris) Paris is the capital of France."
    assert lines[1].startswith("[2] (")
    assert len(result.citations) == 2
    first = result.citations[0]
    hit = retriever.search("capital of France", k=1)[0]
    assert (first.chunk_id, first.source, first.title) == (hit.chunk_id, "wiki/Paris", "Paris")


def test_long_passages_are_cut_and_untitled_ones_fall_back_to_ids(retriever):
    tool = SearchTool(retriever, k=1, mode="bm25", max_chars=80, name="lookup")
    result = tool.invoke({"query": "Rome Italy"})
    assert result.text.startswith("[1] (notitle) Rome is") and result.text.endswith(" ...")
    assert len(result.text) < 140
    assert result.citations[0].source == "notitle" and result.citations[0].title is None
    assert tool.name == "lookup" and tool.json_schema()["parameters"]["required"] == ["query"]


def test_no_hits_empty_query_and_bad_options(retriever):
    tool = SearchTool(retriever, k=3, filter={"doc_id": "nothing"})
    result = tool.invoke("anything")
    assert result.text.startswith("No passages found") and result.citations == []
    with pytest.raises(ToolArgumentError):
        SearchTool(retriever).invoke({"query": ""})
    with pytest.raises(ValueError, match="mode"):
        SearchTool(retriever, mode="fuzzy")


def test_builtin_factory_takes_a_retriever_or_an_index_folder(retriever, tmp_path):
    retriever.save(tmp_path / "idx")
    from_folder = get_builtin("search", index=tmp_path / "idx", k=1)
    from_object = search_tool(retriever=retriever, k=1)
    assert from_folder.invoke("Berlin Germany").text == from_object.invoke("Berlin Germany").text
    with pytest.raises(ValueError, match="exactly one"):
        search_tool()
