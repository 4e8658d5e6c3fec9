"""Written demonstrations recorded through the real guided agent (tiny random Llama, real
tokenizer): the trajectory has the policy's prompt and ids, the tools' observations, and
trainable tokens that are exactly the demonstration's words; bad demonstrations are refused
with the step or line that is wrong; a store gets each demonstration once."""
from __future__ import annotations

import json
from typing import Literal

import pytest

from rankact.agent.guided import GuidedConfig
from rankact.agent.llm.local import TransformersLLM
from rankact.agent.loop import Agent
from rankact.alignment.errors import DemonstrationError
from rankact.alignment.feedback.demonstrations.recording import (
    Demonstration,
    add_demonstrations,
    match_tasks,
    read_demonstrations,
    record_demonstration,
)
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.tasks import Task
from rankact.alignment.training.tokenize import encode_trajectory
from rankact.tools import tool
from rankact.tools.calculator import calculator


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return TransformersLLM(tiny_model_dir)


@tool
def convert(amount: int, unit: Literal["km", "mi"], exact: bool) -> str:
    """Convert a distance."""
    return f"{amount} {unit} exact={exact}"


def _demo(expression="(16 + 78) * 9", answer="846", action="calculator", **extra) -> Demonstration:
    return Demonstration(question="What is (16 + 78) * 9?", steps=[
        {"thought": "The calculator takes the whole expression.", "action": action,
         "action_input": extra.pop("action_input", {"expression": expression})},
        {"thought": "I now know the answer", "final_answer": answer}])


def test_a_demonstration_runs_the_real_tool_and_trains_exactly_its_own_words(llm):
    agent = Agent(llm, [calculator], max_steps=1, guided=True)
    trajectory = record_demonstration(_demo(), agent)

    assert trajectory.status == "finished" and trajectory.final_answer == "846"
    assert trajectory.steps[0].observation == "846"  # the calculator ran; the demonstration gave no result
    assert trajectory.metadata["source"] == "demonstration" and trajectory.model.backend == "demonstration"
    assert trajectory.has_exact_ids
    encoded = encode_trajectory(trajectory, llm.tokenizer)
    trained = llm.decode([i for i, keep in zip(encoded.input_ids, encoded.trainable, strict=True) if keep])
    assert trained == (" The calculator takes the whole expression.\nAction:(16 + 78) * 9"
                       " I now know the answer\nFinal Answer: 846")
    # The context is the policy's own: the prompt ids of a sampled run of the same question.
    sampled = Agent(llm, [calculator], max_steps=1, guided=True,
                    guided_config=GuidedConfig(thought_max_tokens=2, input_max_tokens=2, answer_max_tokens=2)
                    ).run("What is (16 + 78) * 9?")
    assert trajectory.segments[0].token_ids == sampled.segments[0].token_ids


def test_picks_and_fills_for_tool_names_enums_booleans_and_numbers(llm):
    agent = Agent(llm, [calculator, convert], max_steps=3, guided=True)
    demo = Demonstration(question="How far is 5 km?", steps=[
        {"thought": "convert it", "action": "convert", "action_input": {"amount": 5, "unit": "mi", "exact": False}},
        {"thought": "done", "final_answer": "5 mi"}])
    trajectory = record_demonstration(demo, agent)
    assert trajectory.steps[0].action == "convert"
    assert trajectory.steps[0].observation == "5 mi exact=False"


def test_a_wrong_demonstration_is_recorded_as_written_and_ranked_like_any_run(llm):
    agent = Agent(llm, [calculator], max_steps=1, guided=True)
    trajectory = record_demonstration(_demo(expression="16 + 78", answer="94"), agent)
    assert trajectory.steps[0].observation == "94" and trajectory.final_answer == "94"


@pytest.mark.parametrize(("demo", "message"), [
    (lambda: _demo(action="search"), "calls 'search', which the agent does not have"),
    (lambda: _demo(action_input={"expr": "1 + 1"}), "takes exactly the arguments ['expression']"),
    (lambda: _demo(expression='"1" + 1'), "without quotes"),
])
def test_demonstrations_the_agent_cannot_follow_name_the_step(llm, demo, message):
    agent = Agent(llm, [calculator], max_steps=1, guided=True)
    with pytest.raises(DemonstrationError, match="step 1") as caught:
        record_demonstration(demo(), agent)
    assert message in str(caught.value)


def test_an_unguided_agent_cannot_record(llm):
    with pytest.raises(DemonstrationError, match="guided"):
        record_demonstration(_demo(), Agent(llm, [calculator], guided=False))


def test_reading_names_the_bad_line(tmp_path):
    path = tmp_path / "demos.jsonl"
    good = _demo().model_dump_json()
    path.write_text(good + "\n\n" + json.dumps({"question": "q", "steps": [{"thought": "t", "action": "calculator"}]}))
    with pytest.raises(DemonstrationError, match=r"demos.jsonl:3: steps.0: .*without action_input"):
        read_demonstrations(path)
    path.write_text(json.dumps({"question": "q", "steps": [{"thought": "t", "final_answer": "1"},
                                                           {"thought": "t", "final_answer": "2"}]}))
    with pytest.raises(DemonstrationError, match="only the last step"):
        read_demonstrations(path)
    path.write_text(good + "\n")
    assert read_demonstrations(path)[0].steps[1].final_answer == "846"
    with pytest.raises(DemonstrationError, match="cannot read"):
        read_demonstrations(tmp_path / "missing.jsonl")


def test_a_store_gets_each_demonstration_once_under_its_task(llm, tmp_path):
    task = Task(id="arith-7", question="What is (16 + 78) * 9?", answers=["846"], metadata={"tools": ["calculator"]})
    with pytest.raises(DemonstrationError, match="not among the tasks"):
        match_tasks([_demo()], [Task(question="What is 1 + 1?", answers=["2"])])
    matched = match_tasks([_demo()], [task])
    agent = Agent(llm, [calculator], max_steps=1, guided=True)
    with TrajectoryStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        assert add_demonstrations(store, matched, lambda _task: agent) == 1
        assert add_demonstrations(store, matched, lambda _task: agent) == 0  # a rerun adds nothing twice
        [stored] = store.list("arith-7")
        assert stored.metadata["source"] == "demonstration" and stored.metadata["task_id"] == "arith-7"
        assert store.question("arith-7").gold == ["846"]


def test_cli_collect_stores_demonstrations_once_and_refuses_a_scripted_model(tmp_path, tiny_model_dir, capsys):
    from rankact.cli.main import main

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(Task(id="t", question="What is (16 + 78) * 9?", answers=["846"],
                          metadata={"tools": ["calculator"]}).model_dump_json() + "\n")
    demos = tmp_path / "demos.jsonl"
    demos.write_text(_demo().model_dump_json() + "\n")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    command = ["collect", str(tasks), "--samples", "1", "--db", db, "--model", str(tiny_model_dir),
               "--max-steps", "1", "--demonstrations", str(demos)]
    main(command)
    assert "stored 1 demonstrations" in capsys.readouterr().err
    main(command)  # the sample and the demonstration are there: nothing is added twice
    assert "stored 0 demonstrations (1 were already stored)" in capsys.readouterr().err
    with TrajectoryStore(db, create=False) as store:
        assert sorted(t.metadata.get("source", "sample") for t in store.list("t")) == ["demonstration", "sample"]
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Final Answer: 846"]))
    with pytest.raises(SystemExit) as exit_info:
        main(["collect", str(tasks), "--samples", "1", "--db", f"sqlite:///{tmp_path / 'd.db'}",
              "--model", f"scripted:{script}", "--demonstrations", str(demos)])
    assert exit_info.value.code == 2 and "guided" in capsys.readouterr().err
