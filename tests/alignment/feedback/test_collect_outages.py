"""Outages are not data (issue 15, failure 4): a run the backend failed is retried, then left
out of the store; `collect` ends non-zero with one `error:` line, and a rerun collects exactly
the missing samples. A run the model itself ended badly is data and is stored."""
from __future__ import annotations

import json

import pytest

from rankact.agent.errors import BackendError
from rankact.agent.trajectory import Step, StepError
from rankact.alignment.errors import IncompleteCollection
from rankact.alignment.feedback.collection.collect import collect
from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.tasks import Task
from rankact.cli.main import main
from tests.openai_stub_server import API_KEY, StubServer

TASKS = [Task(id="t1", question="What is 2+2?", answers=["4"]), Task(id="t2", question="What is 3+3?", answers=["6"])]


class FlakyBackendAgent:
    """Stands in for an Agent whose backend is down for the first `outages` runs: like the
    real loop, it returns an `error` trajectory with a `backend` step error (or raises
    BackendError, as a wrapper might)."""

    def __init__(self, outages: int = 0, *, raise_error: bool = False, model_error_seeds=()):
        self.outages, self.raise_error, self.model_error_seeds = outages, raise_error, set(model_error_seeds)
        self.calls: list[int] = []

    def run(self, question, *, temperature=None, seed=None):
        self.calls.append(seed)
        if self.outages > 0:
            self.outages -= 1
            if self.raise_error:
                raise BackendError("request failed after 4 attempts: cannot connect (ConnectError)")
            traj = make_trajectory(question, [], final_answer=None, status="error")
            traj.steps = [Step(index=0, error=StepError(kind="backend", message="HTTP 503: overloaded"))]
            return traj
        if seed in self.model_error_seeds:  # the model broke the format every time: data
            traj = make_trajectory(question, [], final_answer=None, status="error")
            traj.steps = [Step(index=0, raw="blah", error=StepError(kind="parse", message="no Action"))]
            return traj
        return make_trajectory(question, [{"final_answer": str(seed)}], final_answer=str(seed))


@pytest.fixture
def store(tmp_path):
    s = TrajectoryStore(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


def _samples(store):
    return sorted((t.metadata["task_id"], t.metadata["sample_index"]) for t in store.list())


@pytest.mark.parametrize("raise_error", [False, True])
def test_an_outage_is_retried_and_never_stored(store, raise_error):
    waits = []
    agent = FlakyBackendAgent(outages=3, raise_error=raise_error)
    report = collect(TASKS, agent, store, samples=2, seed=0, retries=2, retry_wait=1.5, sleep=waits.append)
    # 4 runs, the first 3 hit the outage, one retry round brings them all in
    assert report.added == 4 and report.failed == 0 and report.retried == 3
    assert waits == [1.5]
    assert _samples(store) == [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]
    assert all(t.status == "finished" and t.backend_failure is None for t in store.list())


def test_a_lasting_outage_stores_nothing_and_a_rerun_fills_exactly_the_gaps(store):
    waits = []
    agent = FlakyBackendAgent(outages=10**6)  # down for the whole first run
    report = collect(TASKS, agent, store, samples=3, retries=2, retry_wait=2, sleep=waits.append)
    assert (report.attempted, report.added, report.failed) == (6, 0, 6)
    assert waits == [2, 4]  # backoff doubles, bounded by `retries`
    assert store.count_trajectories() == 0
    assert all(q.trajectories == 0 for q in store.questions())  # nothing rankable came of the outage
    with pytest.raises(IncompleteCollection, match=r"^6 of 6 samples failed \(backend failed: HTTP 503.*rerun"):
        report.raise_if_incomplete()

    recovered = FlakyBackendAgent()
    report = collect(TASKS, recovered, store, samples=3, retries=0, sleep=waits.append)
    assert report.added == 6 and report.failed == 0
    assert sorted(recovered.calls) == [0, 0, 1, 1, 2, 2]
    assert _samples(store) == [(t, k) for t in ("t1", "t2") for k in range(3)]  # no duplicates


def test_a_partial_outage_leaves_gaps_that_a_rerun_fills(store):
    report = collect(TASKS, FlakyBackendAgent(outages=2), store, samples=2, retries=0, sleep=lambda _s: None)
    assert (report.added, report.failed) == (2, 2)
    stored_before = {t.id for t in store.list()}
    rerun = FlakyBackendAgent()
    report = collect(TASKS, rerun, store, samples=2, retries=0)
    assert rerun.calls == [0, 1] and report.added == 2 and report.skipped == 1  # t1 was the one hit
    assert stored_before < {t.id for t in store.list()}  # the first run's samples are kept as they were
    assert _samples(store) == [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]
    again = FlakyBackendAgent()
    assert collect(TASKS, again, store, samples=2).skipped == 2 and again.calls == []


def test_the_models_own_errors_are_data(store):
    agent = FlakyBackendAgent(model_error_seeds={1})
    report = collect(TASKS, agent, store, samples=2, retries=2, sleep=lambda _s: pytest.fail("no retry wanted"))
    assert report.failed == 0 and report.by_status == {"finished": 2, "error": 2}
    report.raise_if_incomplete()  # nothing to say


def test_a_bug_in_a_run_is_not_retried_and_not_stored(store):
    class Broken:
        calls = 0

        def run(self, question, **_):
            Broken.calls += 1
            raise RuntimeError("bug")

    report = collect(TASKS[:1], Broken(), store, samples=2, retries=3, sleep=lambda _s: pytest.fail("no retry"))
    assert (report.failed, report.added, Broken.calls) == (2, 0, 2)
    assert "RuntimeError: bug" in report.failure


def test_the_real_loop_marks_a_backend_failure(tmp_path):
    from rankact.agent.llm.scripted import ScriptedLLM
    from rankact.agent.loop import Agent

    traj = Agent(ScriptedLLM([]), []).run("q")  # the script is empty: the backend raises
    assert traj.status == "error" and "exhausted" in traj.backend_failure
    ok = Agent(ScriptedLLM(["no format at all"] * 5), []).run("q")
    assert ok.status == "error" and ok.backend_failure is None  # the model's fault: data


# --- through the command line, against a real socket --------------------------------------


def _cli(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def fast_http(monkeypatch):
    """The HTTP backend's own backoff would make these tests slow; its retries still happen."""
    import rankact.agent.llm.openai_http as http

    monkeypatch.setattr(http.time, "sleep", lambda _s: None)
    monkeypatch.setenv("RANKACT_API_KEY", API_KEY)


def test_cli_collect_outage_then_recovery(tmp_path, capsys, fast_http):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(t.model_dump_json() + "\n" for t in TASKS))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    with StubServer(outages=10**6) as url:
        args = ["collect", str(tasks), "--samples", "3", "--db", db, "--model", url, "--max-steps", "1",
                "--retries", "1", "--retry-wait", "0"]
        code, err = _cli(args, capsys)
        assert code == 2
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: 6 of 6 samples failed (backend failed: ") and "rerun" in last
        assert "Traceback" not in err
        with TrajectoryStore(db, create=False) as store:
            assert store.count_trajectories() == 0

    with StubServer() as url:  # the server is back
        args[args.index("--model") + 1] = url
        main(args)  # returns: exit status 0
        with TrajectoryStore(db, create=False) as store:
            assert _samples(store) == [(t, k) for t in ("t1", "t2") for k in range(3)]
            assert all(t.backend_failure is None for t in store.list())


def test_cli_collect_partial_outage_rerun_collects_only_the_missing(tmp_path, capsys, fast_http):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(t.model_dump_json() + "\n" for t in TASKS))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    # 4 failed HTTP attempts (1 + 3 retries of the backend) make exactly one run an outage
    with StubServer(outages=4) as url:
        args = ["collect", str(tasks), "--samples", "2", "--db", db, "--model", url, "--max-steps", "1",
                "--retries", "0", "--batch-size", "1"]
        code, err = _cli(args, capsys)
        assert code == 2 and err.strip().splitlines()[-1].startswith("error: 1 of 4 samples failed")
        with TrajectoryStore(db, create=False) as store:
            first = {(t.metadata["task_id"], t.metadata["sample_index"]): t.id for t in store.list()}
        assert len(first) == 3
    with StubServer() as url:
        args[args.index("--model") + 1] = url
        main(args)
        with TrajectoryStore(db, create=False) as store:
            now = {(t.metadata["task_id"], t.metadata["sample_index"]): t.id for t in store.list()}
    assert len(now) == 4 and all(now[key] == tid for key, tid in first.items())


def test_cli_collect_server_not_running_is_one_line(tmp_path, capsys, fast_http):
    with StubServer() as url:
        pass  # closed: connection refused from now on
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(TASKS[0].model_dump_json() + "\n")
    code, err = _cli(["collect", str(tasks), "--samples", "1", "--db", str(tmp_path / "x.db"),
                      "--model", url], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "cannot connect" in err


def test_cli_collect_stores_the_models_own_errors(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(TASKS[0].model_dump_json() + "\n")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["gibberish"] * 10))
    db = str(tmp_path / "x.db")
    main(["collect", str(tasks), "--samples", "1", "--db", db, "--model", f"scripted:{script}"])
    with TrajectoryStore(db, create=False) as store:
        (traj,) = store.list()
    assert traj.status == "error" and traj.backend_failure is None and traj.parse_errors > 0
