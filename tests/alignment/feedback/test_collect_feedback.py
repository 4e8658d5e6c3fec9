"""Collection runs the agent K times per task with a seed per sample, stores every
trajectory, and resumes: complete tasks are skipped, partial ones completed."""
from __future__ import annotations

import json

import pytest

from rankact.alignment.feedback.collection.collect import collect
from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.tasks import Task
from rankact.cli.main import main

TASKS = [Task(id="t1", question="What is 2+2?", answers=["4"], metadata={"split": "dev"}),
         Task(id="t2", question="What is 3+3?", answers=["6"])]


class RecordingAgent:
    """Stands in for agent.loop.Agent: answers with the seed it was given."""

    def __init__(self, fail_seeds=()):
        self.calls = []
        self.fail_seeds = set(fail_seeds)

    def run(self, question, *, temperature=None, seed=None):
        self.calls.append((question, temperature, seed))
        if seed in self.fail_seeds:
            raise RuntimeError("backend fell over")
        return make_trajectory(question, [{"final_answer": str(seed)}], final_answer=str(seed))


@pytest.fixture
def store(tmp_path):
    s = TrajectoryStore(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


def test_k_samples_per_task_with_a_seed_each(store):
    agent = RecordingAgent()
    report = collect(TASKS, agent, store, samples=3, temperature=0.7, seed=10)
    assert report.added == 6 and report.completed == 2 and report.skipped == 0
    assert agent.calls == [(t.question, 0.7, 10 + k) for t in TASKS for k in range(3)]
    stored = store.list("t1")
    assert sorted(t.metadata["sample_index"] for t in stored) == [0, 1, 2]
    assert sorted(t.metadata["seed"] for t in stored) == [10, 11, 12]
    question = store.question("t1")
    assert question.gold == ["4"] and question.metadata == {"split": "dev"} and question.trajectories == 3


def test_resume_skips_complete_and_completes_partial(store):
    collect(TASKS[:1], RecordingAgent(), store, samples=2)
    agent = RecordingAgent()
    report = collect(TASKS, agent, store, samples=3)
    assert agent.calls == [("What is 2+2?", 0.8, 2)] + [("What is 3+3?", 0.8, k) for k in range(3)]
    assert (report.added, report.completed, report.skipped) == (4, 2, 0)
    again = RecordingAgent()
    report = collect(TASKS, again, store, samples=3)
    assert again.calls == [] and report.skipped == 2 and store.count_trajectories() == 6


def test_a_failing_sample_is_counted_and_retried_on_rerun(store):
    report = collect(TASKS, RecordingAgent(fail_seeds={1}), store, samples=2)
    assert report.failed == 2 and report.added == 2
    assert store.question("t2").gold == ["6"]  # the question exists even if samples failed
    retry = RecordingAgent()
    collect(TASKS, retry, store, samples=2)
    assert [seed for _q, _t, seed in retry.calls] == [1, 1]
    assert store.count_trajectories() == 4


def test_cli_collect_with_the_scripted_backend_resumes(tmp_path, capsys):
    pytest.importorskip("rankact.agent.llm.loading")
    pytest.importorskip("rankact.agent.loop")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(t.model_dump_json() + "\n" for t in TASKS))
    script = tmp_path / "script.json"
    script.write_text(json.dumps([f"Thought: easy.\nFinal Answer: {a}" for a in ("4", "four", "6", "7")]))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    main(["collect", str(tasks), "--samples", "2", "--db", db, "--model", f"scripted:{script}"])
    store = TrajectoryStore(db)
    assert sorted(t.final_answer for t in store.list()) == ["4", "6", "7", "four"]
    assert all(t.status == "finished" and t.sampling.get("seed") == t.metadata["seed"] for t in store.list())
    capsys.readouterr()
    main(["collect", str(tasks), "--samples", "2", "--db", db, "--model", f"scripted:{script}"])
    assert "already have 2 trajectories" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["collect", str(tmp_path / "missing.jsonl"), "--db", db])
    assert exit_info.value.code == 2


def test_cli_collect_gives_each_task_the_tools_it_names(tmp_path):
    """Collection stores trajectories made with the tools eval measures (metadata.tools)."""
    from rankact.retrieval import HashingEmbedder, Retriever

    retriever = Retriever(HashingEmbedder())
    retriever.add([{"id": "d", "text": "Four is two plus two.", "title": "Four"}])
    retriever.save(tmp_path / "idx")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "arith", "question": "2+2?", "answers": ["4"],
                                 "metadata": {"tools": ["calculator"]}}) + "\n"
                     + json.dumps({"id": "lookup", "question": "What is four?", "answers": ["2+2"]}) + "\n")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["Final Answer: 4"] * 2))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    main(["collect", str(tasks), "--samples", "1", "--db", db, "--model", f"scripted:{script}",
          "--index", str(tmp_path / "idx")])
    with TrajectoryStore(db, create=False) as store:
        assert [t.name for t in store.list("arith")[0].tools] == ["calculator"]
        assert [t.name for t in store.list("lookup")[0].tools] == ["calculator", "search"]


def test_a_ranked_question_is_closed_and_collect_does_not_run_for_it(store):
    from rankact.alignment.feedback.collection.collect import samples_to_run
    from rankact.alignment.feedback.records.rankings import Ranking

    collect(TASKS, RecordingAgent(), store, samples=2)
    store.create_account("alice")
    ids = [t.id for t in store.list("t1")]
    store.submit_ranking(Ranking(question_id="t1", annotator="alice", order=[[i] for i in ids]))
    assert samples_to_run(TASKS, store, 3) == 1  # t2's third sample only
    agent = RecordingAgent()
    report = collect(TASKS, agent, store, samples=3)
    assert agent.calls == [("What is 3+3?", 0.8, 2)]  # no run is wasted on the closed question
    assert (report.closed, report.added, report.failed) == (1, 1, 0)
    assert store.question("t1").trajectories == 2
