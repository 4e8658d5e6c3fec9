"""Each task's agent gets the tools the task names; preset indexes are built once and cached."""
from pathlib import Path

import pytest

from rankact.agent.build import AgentSetupError
from rankact.agent.llm.scripted import ScriptedLLM
from rankact.alignment.evaluation.evaluate import evaluate_llm, model_label
from rankact.alignment.tasks import Task, indexes
from rankact.alignment.tasks.agents import TaskAgents, tool_groups


def test_preset_index_is_built_once_and_cached(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKACT_CACHE", str(tmp_path / "cache"))
    built = []

    def fake_build(records, out, *, progress=True, embedder=None):
        built.append(len(records))
        Path(out).mkdir(parents=True)
        return Path(out)

    monkeypatch.setattr(indexes, "build_index", fake_build)
    announced = []
    first = indexes.preset_index("nq", "test", shared_data, on_build=announced.append)
    second = indexes.preset_index("nq", "test", shared_data, on_build=announced.append)
    assert first == second and first.parent == tmp_path / "cache" / "indexes"
    assert built == [655] and announced == [655]  # the TEST split's 655 gold passages, indexed once
    assert indexes.preset_index("arith", "dev") is None  # arithmetic needs no corpus


def test_model_labels_are_short():
    assert model_label("default") == "default"
    assert model_label("/tmp/runs/demo/dpo") == "demo/dpo"
    assert model_label("scripted:/a/b.json") == "scripted:/a/b.json"


def test_tasks_get_the_tools_they_ask_for():
    from rankact.retrieval import HashingEmbedder, Retriever

    retriever = Retriever(HashingEmbedder())
    retriever.add([{"id": "d", "text": "One is a number.", "title": "One"}])
    tasks = [Task(question="q1", answers=["1"], metadata={"tools": ["calculator"]}),
             Task(question="q2", answers=["2"]),
             Task(question="q3", answers=["3"], metadata={"tools": ["calculator"]})]
    groups = tool_groups(tasks)
    assert [(names, [t.question for t in group]) for names, group in groups] == [
        (("calculator",), ["q1", "q3"]), (None, ["q2"])]
    agents = TaskAgents(ScriptedLLM([]), retriever=retriever)
    assert agents(tasks[0]) is agents(tasks[2])  # one agent per tool set
    assert [t.name for t in agents(tasks[0]).tools] == ["calculator"]
    assert [t.name for t in agents(tasks[1]).tools] == ["calculator", "search"]
    # The report keeps the tasks' order.
    llm = ScriptedLLM(["Final Answer: 1", "Final Answer: 0", "Final Answer: 3"])
    report = evaluate_llm(llm, tasks, label="x", progress=False)
    assert [r.prediction for r in report.results] == ["1", "0", "3"]
    assert report.em == 2 / 3
    with pytest.raises(AgentSetupError, match="search needs an index"):
        TaskAgents(ScriptedLLM([]))(Task(question="q", metadata={"tools": ["search"]}))
