"""Lookup demonstrations from gold answers: a demonstration answers only what its own search
brought back, with the answer as the gold spells it, and records through the real agent."""
from __future__ import annotations

import pytest

from rankact.agent.llm.local import TransformersLLM
from rankact.agent.loop import Agent
from rankact.alignment.feedback.demonstrations.lookup import (
    answer_in_passages,
    lookup_demonstration,
    lookup_demonstrations,
)
from rankact.alignment.feedback.demonstrations.recording import (
    read_demonstrations,
    record_demonstration,
    write_demonstrations,
)
from rankact.alignment.tasks import Task
from rankact.tools import tool

PASSAGES = {
    "who got the first nobel prize in physics":
        "[1] (Nobel — nq) The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen.",
    "where does the river end": "[1] (River — nq) It flows into Hudson Bay.",
    "when did it open": "[1] (Hall — nq) Built in 1901.",
}


def search(query: str) -> str:
    search.calls.append(query)
    return PASSAGES.get(query, "No passages found.")


@pytest.fixture(autouse=True)
def _fresh_calls():
    search.calls = []


def test_the_answer_is_the_first_gold_the_passages_hold_as_whole_words():
    text = PASSAGES["who got the first nobel prize in physics"]
    assert answer_in_passages(["Marie Curie", "Wilhelm Conrad Röntgen"], text) == "Wilhelm Conrad Röntgen"
    assert answer_in_passages(["the Hudson Bay"], "It flows into Hudson Bay.") == "the Hudson Bay"  # SQuAD normalization
    assert answer_in_passages(["190", "1"], "Built in 1901.") is None  # no matches inside a word
    assert answer_in_passages(['"Bay"', "Hudson"], "It flows into Hudson Bay.") == "Hudson"  # quotes are skipped
    assert answer_in_passages(["", "  "], "anything") is None


def test_a_demonstration_searches_the_question_and_answers_from_the_passages():
    demo = lookup_demonstration("where does the river end", ["central Saskatchewan", "the Hudson Bay"], search)

    assert search.calls == ["where does the river end"]
    first, last = demo.steps
    assert (first.action, first.action_input) == ("search", {"query": "where does the river end"})
    assert last.final_answer == "the Hudson Bay"


def test_no_demonstration_when_the_passages_lack_the_answer_or_the_question_has_a_quote():
    assert lookup_demonstration("when did it open", ["1902"], search) is None
    assert lookup_demonstration('who sang "hello"', ["Adele"], search) is None
    assert search.calls == ["when did it open"]  # the quoted question never searched


def test_tasks_without_an_answer_in_their_passages_are_skipped_until_the_limit(tmp_path):
    tasks = [Task(id="a", question="when did it open", answers=["1902"]),
             Task(id="b", question="where does the river end", answers=["Hudson Bay"]),
             Task(id="c", question="who got the first nobel prize in physics", answers=["Wilhelm Conrad Röntgen"])]
    demos = lookup_demonstrations(tasks, search, limit=1)
    assert [d.question for d in demos] == ["where does the river end"]
    assert "who got the first nobel prize in physics" not in search.calls  # stopped at the limit

    path = tmp_path / "demos.jsonl"
    assert write_demonstrations(lookup_demonstrations(tasks, search), path) == 2
    assert read_demonstrations(path) == lookup_demonstrations(tasks, search)


def test_a_lookup_demonstration_records_through_the_real_search_tool(tiny_model_dir):
    @tool
    def search(query: str) -> str:  # the agent's tool: the name the demonstration calls
        """Search the passages."""
        return PASSAGES.get(query, "No passages found.")

    demo = lookup_demonstration("where does the river end", ["Hudson Bay"], PASSAGES.__getitem__)
    agent = Agent(TransformersLLM(tiny_model_dir), [search], max_steps=1, guided=True)
    trajectory = record_demonstration(demo, agent)

    assert trajectory.status == "finished" and trajectory.final_answer == "Hudson Bay"
    assert trajectory.steps[0].observation == PASSAGES["where does the river end"]


def test_cli_writes_demonstrations_from_a_task_file_and_its_index(tmp_path, run_cli):
    from rankact.alignment.tasks import write_tasks
    from rankact.retrieval import HashingEmbedder, Retriever

    retriever = Retriever(HashingEmbedder())
    retriever.add([{"id": "river", "title": "River", "text": "The river flows into Hudson Bay."},
                   {"id": "hall", "title": "Hall", "text": "The hall was built in 1901."}])
    retriever.save(tmp_path / "idx")
    write_tasks([Task(id="a", question="where does the river flow", answers=["Hudson Bay"]),
                 Task(id="b", question="when was the hall built", answers=["1902"])], tmp_path / "t.jsonl")
    out_file = tmp_path / "demos.jsonl"

    code, out, err = run_cli(["feedback", "lookup-demonstrations", str(tmp_path / "t.jsonl"), "--index",
                              str(tmp_path / "idx"), "--k", "2", "--out", str(out_file)])
    assert code == 0, err
    assert "wrote 1 lookup demonstrations" in out
    (demo,) = read_demonstrations(out_file)  # 1902 is not in the passages: no demonstration
    assert demo.question == "where does the river flow" and demo.steps[-1].final_answer == "Hudson Bay"


@pytest.mark.parametrize(("argv", "message"), [
    (["nq:test"], "DEV questions only"),
    (["arith:dev"], "give --index"),
])
def test_cli_refuses_test_splits_and_a_missing_index(argv, message, tmp_path, run_cli):
    code, _, err = run_cli(["feedback", "lookup-demonstrations", *argv, "--out", str(tmp_path / "d.jsonl")])
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "d.jsonl").exists()
