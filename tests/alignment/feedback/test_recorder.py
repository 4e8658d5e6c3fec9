"""The recorder against the real feedback service (uvicorn on loopback, in a thread) and a
real store: a service that is down then up, slow, refusing data or the token, an app killed
mid-batch, and the store-URL mode. Each test checks what arrived: everything, once."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from rankact.agent.llm.scripted import ScriptedLLM
from rankact.agent.loop import Agent
from rankact.alignment.errors import RecorderError
from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.recorder.recorder import Recorder
from rankact.alignment.feedback.recorder.spool import Spool
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.server import free_port, serve_in_thread
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

ROOT = Path(__file__).resolve().parents[3]
FAST = {"backoff": 0.02, "max_backoff": 0.1, "linger": 0.01}


def trajectories(n: int, prefix: str = "q"):
    return [make_trajectory(f"{prefix} {i}?", [{"thought": "easy", "final_answer": str(i)}], final_answer=str(i))
            for i in range(n)]


@pytest.fixture
def store(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    yield store
    store.close()


@pytest.fixture
def token(store):
    return store.create_account("my-app", "ingest")  # may post trajectories, nothing else


def slow_app(store, delay: float, only_status: int | None = None):
    """The service, answering each request (or those with `only_status`) `delay` seconds after
    it has handled it."""
    app = create_app(store)

    @app.middleware("http")
    async def _slow(request, call_next):
        response = await call_next(request)
        if only_status in (None, response.status_code):
            await asyncio.sleep(delay)
        return response

    return app


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def stored_ids(store) -> list[str]:
    return [t.id for t in store.list(limit=10_000)]


# --- the service down, then up --------------------------------------------------------


def test_service_down_then_up_loses_nothing_and_duplicates_nothing(tmp_path, store, token):
    port = free_port()
    # 20 runs of one question (a question id names one question text: the service checks it)
    sent = [make_trajectory("What is 2 + 2?", [{"thought": "easy", "final_answer": str(i)}], final_answer=str(i))
            for i in range(20)]
    with Recorder(f"http://127.0.0.1:{port}", token=token, spool_dir=tmp_path / "spool", **FAST) as recorder:
        for t in sent[:12]:
            assert recorder.record(t, question_id="arith", gold=["x"]) is True
        wait_until(lambda: recorder.stats().retries >= 3)  # several failed attempts
        down = recorder.stats()
        assert down.sent == 0 and down.spooled == 12 and down.retries >= 3 and down.failed == 0
        assert "ConnectError" in down.last_error

        with serve_in_thread(create_app(store), port=port):
            for t in sent[12:]:
                recorder.record(t, question_id="arith", gold=["x"])
            assert recorder.flush(timeout=10)
            up = recorder.stats()
        assert (up.recorded, up.sent, up.duplicates, up.spooled, up.failed, up.dropped) == (20, 20, 0, 0, 0, 0)
    assert sorted(stored_ids(store)) == sorted(t.id for t in sent)
    assert store.question("arith").gold == ["x"] and store.question("arith").trajectories == 20
    assert (tmp_path / "spool" / "spool-0.jsonl").stat().st_size == 0  # caught up: truncated


def test_a_new_recorder_replays_the_spool_and_counts_what_was_stored_already(tmp_path, store, token):
    port = free_port()
    sent = trajectories(10)
    with Recorder(f"http://127.0.0.1:{port}", token=token, spool_dir=tmp_path, **FAST) as first:
        for t in sent:
            first.record(t)
    assert first.stats().spooled == 10
    for t in sent[:3]:  # delivered by an earlier attempt whose answer was lost
        store.add(t)

    with (
        serve_in_thread(create_app(store), port=port),
        Recorder(f"http://127.0.0.1:{port}", token=token, spool_dir=tmp_path, **FAST) as second,
    ):
        assert second.stats().replayed == 10
        assert second.flush(timeout=10)
        stats = second.stats()
    assert (stats.sent, stats.duplicates, stats.spooled) == (10, 3, 0)
    assert sorted(stored_ids(store)) == sorted(t.id for t in sent)


# --- a slow service ----------------------------------------------------------------------


def test_slow_service_never_slows_record_and_close_is_bounded(tmp_path, store, token):
    sent = trajectories(30)
    with serve_in_thread(slow_app(store, delay=0.3)) as url:
        recorder = Recorder(url, token=token, spool_dir=tmp_path, close_timeout=0.5, **FAST)
        started = time.perf_counter()
        for t in sent:
            assert recorder.record(t)
        per_call = (time.perf_counter() - started) / len(sent)
        assert per_call < 0.02, f"record() took {per_call:.3f}s a call"

        started = time.perf_counter()
        stats = recorder.close()
        assert time.perf_counter() - started < 1.5
        assert 0 < stats.spooled < 30 and stats.sent + stats.spooled == 30

    # what was left is sent by the next recorder on the folder, once
    with (
        serve_in_thread(create_app(store)) as url,
        Recorder(url, token=token, spool_dir=tmp_path, **FAST) as again,
    ):
        assert again.flush(timeout=10)
    assert sorted(stored_ids(store)) == sorted(t.id for t in sent)


def test_a_request_that_times_out_after_the_service_stored_it_is_not_stored_twice(tmp_path, store, token):
    sent = trajectories(3)
    # stored at once, but answered after the client gave up; the re-sent line meets a 409
    with (
        serve_in_thread(slow_app(store, delay=0.4, only_status=201)) as url,
        Recorder(url, token=token, spool_dir=tmp_path, request_timeout=0.1, **FAST) as recorder,
    ):
        for t in sent:
            recorder.record(t)
        assert recorder.flush(timeout=15)
        stats = recorder.stats()
    assert stats.retries >= 3 and stats.duplicates == 3 and stats.sent == 3
    assert sorted(stored_ids(store)) == sorted(t.id for t in sent)


# --- an app killed mid-batch -------------------------------------------------------------

APP = textwrap.dedent("""
    import sys, time
    from rankact.alignment.feedback.recorder.recorder import Recorder
    from rankact.alignment.feedback.collection.sample_data import make_trajectory

    url, token, spool, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    recorder = Recorder(url, token=token, spool_dir=spool, batch_size=8, linger=0)
    for i in range(n):
        t = make_trajectory(f"q {i}?", [{"thought": "easy", "final_answer": str(i)}], final_answer=str(i))
        recorder.record(t, question_id=f"q{i}")
    print("recorded", flush=True)
    time.sleep(60)
""")


def test_an_app_killed_mid_batch_loses_nothing(tmp_path, store, token):
    n = 40
    with serve_in_thread(slow_app(store, delay=0.05)) as url:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        app = subprocess.Popen([sys.executable, "-c", APP, url, token, str(tmp_path), str(n)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, text=True)
        try:
            assert app.stdout.readline().strip() == "recorded"
            deadline = time.monotonic() + 20
            while len(stored_ids(store)) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait(10)
        arrived = len(stored_ids(store))
        assert 5 <= arrived < n, "the app was meant to die mid-way"

        with Recorder(url, token=token, spool_dir=tmp_path, **FAST) as recorder:
            assert recorder.stats().replayed >= n - arrived
            assert recorder.flush(timeout=20)
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) == n
    assert {q.id for q in store.questions()} == {f"q{i}" for i in range(n)}


# --- data or a token the service refuses ------------------------------------------------


def test_rejected_data_goes_to_the_dead_letter_file_and_is_not_retried(tmp_path, store, token):
    good = trajectories(2)
    bad = trajectories(1, prefix="bad")[0]
    with (
        serve_in_thread(create_app(store)) as url,
        Recorder(url, token=token, spool_dir=tmp_path, **FAST) as recorder,
    ):
        recorder.record(good[0])
        recorder.record(bad, question_id="x" * 200)  # the service allows 128 characters: 422
        recorder.record(good[1])
        assert recorder.flush(timeout=10)
        stats = recorder.stats()
    assert (stats.sent, stats.failed, stats.spooled, stats.retries) == (2, 1, 0, 0)
    assert "HTTP 422" in stats.last_error
    assert sorted(stored_ids(store)) == sorted(t.id for t in good)
    [dead] = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert "HTTP 422" in dead["reason"] and "question_id" in dead["reason"]
    assert dead["body"]["trajectory"]["id"] == bad.id  # kept whole, to fix and send again


def test_a_refused_token_keeps_everything_spooled_until_a_good_one_comes(tmp_path, store, token):
    sent = trajectories(3)
    with serve_in_thread(create_app(store)) as url:
        with Recorder(url, token="not-a-token", spool_dir=tmp_path, **FAST) as wrong:  # closed before `right` starts
            for t in sent:
                wrong.record(t)
            assert not wrong.flush(timeout=0.3)
            deadline = time.monotonic() + 10  # a busy machine may not have tried within 0.3 s
            while wrong.stats().last_error is None and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = wrong.stats()
        assert stats.spooled == 3 and stats.failed == 0 and "refused the token" in stats.last_error
        assert not (tmp_path / "dead-letter.jsonl").exists()
        with Recorder(url, token=token, spool_dir=tmp_path, **FAST) as right:
            assert right.flush(timeout=10)
    assert sorted(stored_ids(store)) == sorted(t.id for t in sent)


# --- straight into a store ------------------------------------------------------------------


def test_store_url_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'direct.db'}"
    sent = trajectories(5)
    with TrajectoryStore(url) as before:
        before.add(sent[0])  # already there: counted as delivered, not stored twice
    with Recorder(url, spool_dir=tmp_path / "spool", **FAST) as recorder:
        for t in sent:
            recorder.record(t, question_id="direct", gold=["4"])
        assert recorder.flush(timeout=10)
        stats = recorder.stats()
    assert (stats.sent, stats.duplicates, stats.failed) == (5, 1, 0)
    with TrajectoryStore(url) as after:
        assert sorted(stored_ids(after)) == sorted(t.id for t in sent)
        assert after.question("direct").gold == ["4"]


def test_store_url_mode_with_the_database_down_keeps_the_spool(tmp_path):
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://rankact:x@127.0.0.1:{free_port()}/rankact"  # nothing listens there
    with Recorder(url, spool_dir=tmp_path, **FAST) as recorder:
        recorder.record(trajectories(1)[0])
        wait_until(lambda: recorder.stats().retries >= 2)
        stats = recorder.stats()
    assert stats.spooled == 1 and stats.retries >= 1 and stats.failed == 0
    assert "cannot open database" in stats.last_error


# --- the app's side: wrap, and never an exception -----------------------------------------


def test_wrap_records_run_stream_and_arun(tmp_path, store, token):
    llm = ScriptedLLM(["Thought: easy.\nFinal Answer: 391"] * 3)
    with (
        serve_in_thread(create_app(store)) as url,
        Recorder(url, token=token, spool_dir=tmp_path, **FAST) as recorder,
    ):
        agent = recorder.wrap(Agent(llm, tools=[]))
        ran = agent.run("What is 17 * 23?", question_id="mult", gold=["391"])
        streamed = [e for e in agent.stream("What is 17 * 23?", question_id="mult") if e.type == "done"]
        arun = asyncio.run(agent.arun("What is 17 * 23?", question_id="mult"))
        assert agent.max_steps == agent.agent.max_steps  # the rest is the agent's
        assert recorder.flush(timeout=10)
    assert ran.final_answer == "391"
    assert sorted(stored_ids(store)) == sorted([ran.id, streamed[0].trajectory.id, arun.id])
    assert store.question("mult").gold == ["391"]


def test_record_never_raises(tmp_path, caplog):
    recorder = Recorder(f"sqlite:///{tmp_path / 'x.db'}", spool_dir=tmp_path / "spool", max_spool_bytes=2000,
                        **FAST)
    assert recorder.record("not a trajectory") is False
    assert recorder.record(trajectories(1)[0], gold="391") is False
    big = make_trajectory("big?", [{"thought": "x" * 5000, "final_answer": "1"}], final_answer="1")
    assert recorder.record(big) is False  # the spool is full
    recorder.close()
    assert recorder.record(trajectories(1)[0]) is False
    stats = recorder.stats()
    assert stats.dropped == 4 and stats.recorded == 0
    assert "recorder closed" in stats.last_error and "is full" in caplog.text
    assert recorder.close() == stats  # a second close is harmless


def test_a_bad_configuration_fails_at_start(tmp_path):
    with pytest.raises(RecorderError, match="needs a token"):
        Recorder("http://127.0.0.1:8000", spool_dir=tmp_path)
    with pytest.raises(RecorderError, match="unknown recorder target"):
        Recorder("ftp://example.org", spool_dir=tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(RecorderError, match="cannot use spool folder"):
        Recorder("sqlite:///x.db", spool_dir=tmp_path / "file")


# --- the spool ---------------------------------------------------------------------------


def test_spool_drops_a_torn_last_line_and_adopts_a_dead_processes_spool(tmp_path):
    mine = Spool(tmp_path)
    other = Spool(tmp_path)  # another process's: claims spool-1
    assert other.path.name == "spool-1.jsonl"
    other.append(b'{"n": 1}')
    other.close()
    with open(other.path, "ab") as f:
        f.write(b'{"n": 2, "torn')  # the write a kill cut short
    mine.append(b'{"n": 0}')
    mine.close()

    again = Spool(tmp_path)  # claims spool-0 again and takes over spool-1's lines
    assert again.path.name == "spool-0.jsonl" and again.adopted == 1 and again.pending == 2
    assert again.peek(10) == [b'{"n": 0}', b'{"n": 1}']
    assert not other.path.exists()


def test_spool_compacts_a_long_backlog_keeping_order(tmp_path):
    spool = Spool(tmp_path, compact_bytes=30)
    for i in range(10):
        spool.append(json.dumps({"n": i}).encode())
    for line in spool.peek(5):
        spool.ack(line)
    assert spool.path.stat().st_size < 10 * 9  # the acknowledged front is gone
    assert [json.loads(line)["n"] for line in spool.peek(100)] == [5, 6, 7, 8, 9]
    assert spool.pending == 5


def test_overload_answers_and_a_bug_in_delivery_are_retried_without_killing_the_thread(tmp_path):
    answers = [RuntimeError("a bug"), httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "busy"}),
               httpx.Response(503, json={"detail": "the database is unavailable, try again"}),
               httpx.Response(201, json={"id": "x", "question_id": "q"})]

    def handler(request):
        assert request.headers["authorization"] == "Bearer tok"
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with Recorder("http://service.test", token="tok", spool_dir=tmp_path, transport=httpx.MockTransport(handler),
                  **FAST) as recorder:
        recorder.record(trajectories(1)[0])
        assert recorder.flush(timeout=10)
        stats = recorder.stats()
    assert (stats.sent, stats.retries, stats.failed) == (1, 3, 0) and answers == []
    assert "HTTP 503" in stats.last_error
