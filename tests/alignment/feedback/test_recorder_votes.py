"""End users' votes through the recorder: the same spool and retry path as trajectories, against
the real service (down, then up: nothing lost, nothing counted twice), in store-URL mode, a
spool holding lines written before votes existed, and bad calls that never raise."""
from __future__ import annotations

import json
import logging
import time

from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.recorder.recorder import Recorder
from rankact.alignment.feedback.recorder.targets import FEEDBACK_PREFIX
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.server import free_port, serve_in_thread
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

FAST = {"backoff": 0.02, "max_backoff": 0.1, "linger": 0.01}


def runs(n: int, question: str = "What is 17 * 23?"):
    return [make_trajectory(question, [{"thought": "easy", "final_answer": str(i)}], final_answer=str(i))
            for i in range(n)]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_votes_survive_a_service_that_is_down_then_up(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    token = store.create_account("my-app", "ingest")
    port = free_port()
    t = runs(3)
    with Recorder(f"http://127.0.0.1:{port}", token=token, spool_dir=tmp_path / "spool", **FAST) as recorder:
        for trajectory in t:
            assert recorder.record(trajectory, question_id="mult")
        assert recorder.thumbs(t[0].id, True, end_user="u1")
        assert recorder.thumbs(t[1].id, False, end_user="u1")
        assert recorder.feedback(t[2].id, 0.5, end_user="u2", comment="ok")
        assert recorder.prefer(t[0].id, t[1].id, end_user="u2")
        assert recorder.thumbs(t[1].id, True, end_user="u1")  # u1 changes their mind: replaces the down
        wait_until(lambda: recorder.stats().retries >= 3)
        assert recorder.stats().spooled == 8 and recorder.stats().sent == 0
        lines = (tmp_path / "spool" / "spool-0.jsonl").read_bytes().splitlines()
        assert sum(line.startswith(FEEDBACK_PREFIX) for line in lines) == 5  # each line says what it is

        with serve_in_thread(create_app(store), port=port):
            assert recorder.flush(timeout=10)
            # the app resends a vote it is unsure about: a duplicate, not a second vote
            assert recorder.feedback(t[2].id, 0.5, end_user="u2", comment="ok", feedback_id="fixed")
            assert recorder.feedback(t[2].id, 0.5, end_user="u2", comment="ok", feedback_id="fixed")
            assert recorder.flush(timeout=10)
            stats = recorder.stats()
    assert (stats.recorded, stats.sent, stats.failed, stats.dropped) == (10, 10, 0, 0)
    assert stats.duplicates == 2  # the same vote with another id hit its slot, then the resend
    votes = store.end_user_feedback(question_id="mult")
    assert sorted((v.kind, v.end_user, v.score, v.chosen_id) for v in votes) == sorted([
        ("thumbs", "u1", 1.0, None), ("thumbs", "u1", 1.0, None), ("score", "u2", 0.5, None),
        ("choice", "u2", None, t[0].id)])
    assert {v.app for v in votes} == {"my-app"}
    store.close()


def test_store_url_mode_and_a_spool_from_before_votes(tmp_path):
    url = f"sqlite:///{tmp_path / 'direct.db'}"
    t = runs(2)
    spool = tmp_path / "spool"
    spool.mkdir()
    # a spool left by a recorder of the previous release: trajectory lines with no kind
    old_line = json.dumps({"trajectory": json.loads(t[0].to_json()), "question_id": "q", "gold": None})
    (spool / "spool-7.jsonl").write_text(old_line + "\n")
    (spool / "spool-7.lock").touch()
    with Recorder(url, spool_dir=spool, **FAST) as recorder:
        assert recorder.stats().replayed == 1
        recorder.record(t[1], question_id="q")
        recorder.prefer(t[1].id, t[0].id, end_user="u")
        recorder.thumbs("never-recorded", True, end_user="u")  # refused for good: dead-lettered
        assert recorder.flush(timeout=10)
        stats = recorder.stats()
    assert (stats.sent, stats.failed) == (3, 1)
    dead = [json.loads(line) for line in (spool / "dead-letter.jsonl").read_text().splitlines()]
    assert "no trajectory with id 'never-recorded'" in dead[0]["reason"]
    with TrajectoryStore(url) as store:
        assert sorted(store.trajectory_ids("q")) == sorted(x.id for x in t)
        assert [(v.chosen_id, v.app) for v in store.end_user_feedback()] == [(t[1].id, "local")]


def test_a_bad_vote_is_logged_and_dropped_never_raised(tmp_path, caplog):
    with Recorder(f"sqlite:///{tmp_path / 'x.db'}", spool_dir=tmp_path / "spool", **FAST) as recorder:
        with caplog.at_level(logging.ERROR, "rankact.recorder"):
            assert recorder.feedback("t", 3.0, end_user="u") is False
            assert recorder.prefer("t", "t", end_user="u") is False
            assert recorder.thumbs("t", True, end_user="") is False
        assert recorder.stats().dropped == 3 and recorder.stats().spooled == 0
    assert "cannot record the vote" in caplog.text
