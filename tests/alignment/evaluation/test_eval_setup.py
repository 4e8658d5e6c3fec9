from pathlib import Path

from alignment.evaluation import setup as eval_setup


def test_preset_index_is_built_once_and_cached(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKACT_CACHE", str(tmp_path / "cache"))
    built = []

    def fake_build(records, out, *, progress=True, embedder=None):
        built.append(len(records))
        Path(out).mkdir(parents=True)
        return Path(out)

    monkeypatch.setattr(eval_setup, "build_index", fake_build)
    announced = []
    first = eval_setup.preset_index("nq", "test", shared_data, on_build=announced.append)
    second = eval_setup.preset_index("nq", "test", shared_data, on_build=announced.append)
    assert first == second and first.parent == tmp_path / "cache" / "indexes"
    assert built == [655] and announced == [655]  # the TEST split's 655 gold passages, indexed once
    assert eval_setup.preset_index("arith", "dev") is None  # arithmetic needs no corpus


def test_model_labels_are_short():
    assert eval_setup.model_label("default") == "default"
    assert eval_setup.model_label("/tmp/runs/demo/dpo") == "demo/dpo"
    assert eval_setup.model_label("scripted:/a/b.json") == "scripted:/a/b.json"


def test_tools_for_the_agent():
    names = [t.name for t in eval_setup.make_tools()]
    assert names == ["calculator"]


def test_tasks_get_the_tools_they_ask_for():
    import pytest

    from agent.llm.scripted import ScriptedLLM
    from alignment.tasks import Task

    tasks = [Task(question="q1", answers=["1"], metadata={"tools": ["calculator"]}),
             Task(question="q2", answers=["2"]),
             Task(question="q3", answers=["3"], metadata={"tools": ["calculator"]})]
    groups = eval_setup.tool_groups(tasks)
    assert [(names, [t.question for t in group]) for names, group in groups] == [
        (("calculator",), ["q1", "q3"]), (None, ["q2"])]
    # groups run one after another; the merged report keeps the tasks' order
    llm = ScriptedLLM(["Final Answer: 1", "Final Answer: 3", "Final Answer: 0"])
    report = eval_setup.evaluate_agent(llm, tasks, label="x", progress=False)
    assert [r.prediction for r in report.results] == ["1", "0", "3"]
    assert report.em == 2 / 3
    with pytest.raises(eval_setup.EvalSetupError, match="search needs an index"):
        eval_setup.make_tools(names=["search"])
