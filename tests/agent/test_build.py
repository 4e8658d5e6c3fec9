"""`build_agent`: the one way every command and trainer assembles an agent."""
from __future__ import annotations

import pytest

from rankact.agent.build import DEFAULT_MAX_STEPS, AgentSetupError, build_agent, load_index
from rankact.agent.llm.scripted import ScriptedLLM
from rankact.agent.loop import Agent


def _retriever():
    from rankact.retrieval import HashingEmbedder, Retriever

    retriever = Retriever(HashingEmbedder())
    retriever.add([{"id": "paris", "text": "Paris is the capital of France.", "title": "Paris"}])
    return retriever


def test_defaults_are_the_calculator_and_one_max_steps():
    agent = build_agent(ScriptedLLM(["Final Answer: 1"]))
    assert [t.name for t in agent.tools] == ["calculator"]
    assert agent.max_steps == DEFAULT_MAX_STEPS == Agent(ScriptedLLM([])).max_steps


def test_an_index_adds_search_and_names_pick_tools_in_order(tmp_path):
    _retriever().save(tmp_path / "idx")
    agent = build_agent(ScriptedLLM([]), index=tmp_path / "idx", search_k=2)
    assert [t.name for t in agent.tools] == ["calculator", "search"] and agent.tools[1].k == 2
    picked = build_agent(ScriptedLLM([]), tools=["search", "calculator"], retriever=_retriever(), max_steps=2)
    assert [t.name for t in picked.tools] == ["search", "calculator"] and picked.max_steps == 2
    assert [t.name for t in build_agent(ScriptedLLM([]), tools=["http_get"]).tools] == ["http_get"]


def test_unavailable_tools_are_one_line_errors():
    with pytest.raises(AgentSetupError, match="search needs an index"):
        build_agent(ScriptedLLM([]), tools=["search"])
    with pytest.raises(AgentSetupError, match="unknown tool 'weather'"):
        build_agent(ScriptedLLM([]), tools=["weather"])


@pytest.mark.parametrize("make", [
    lambda p: p / "missing",
    lambda p: (p / "empty").mkdir() or p / "empty",
    lambda p: (p / "file.txt").write_text("x") and p / "file.txt",
    lambda p: (p / "junk").mkdir() or (p / "junk" / "manifest.json").write_text("{not json") and p / "junk",
])
def test_a_bad_index_folder_is_one_line_naming_it(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(AgentSetupError) as info:
        load_index(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
