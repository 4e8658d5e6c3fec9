"""No line the recorder takes is ever acknowledged without being stored: every answer the
service can give leaves each line stored, still spooled, or dead-lettered with the reason.
Then the two ways data used to vanish, against the real service and store: a run of a question
that already has rankings (it goes to the next version), and an id that holds another
trajectory (dead-lettered); and replaying dead letters once their cause is fixed."""
from __future__ import annotations

import json

import httpx
import pytest

from rankact.alignment.errors import AlreadyStoredError, ConflictError, QuestionClosedError
from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.recorder.recorder import Recorder
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.server import serve_in_thread
from rankact.alignment.feedback.store.questions import question_id_for
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.cli.main import main

FAST = {"backoff": 0.02, "max_backoff": 0.05, "linger": 0.01}
QUESTION = "What is the capital of France?"


def run_of(question: str = QUESTION, answer: str = "Paris"):
    return make_trajectory(question, [{"thought": "I know it", "final_answer": answer}], final_answer=answer)


def dead_letters(folder) -> list[dict]:
    path = folder / "dead-letter.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stored(body=None, status=201):
    return lambda request: httpx.Response(status, json=body or {"id": json.loads(request.content)["trajectory"]["id"],
                                                                "question_id": "q"})


def closed_then_stored(request):
    body = json.loads(request.content)
    if body.get("version", 1) == 1:
        return httpx.Response(409, json={"detail": "question q already has rankings", "code": "question_closed",
                                         "question_id": "q", "next_version": 2, "next_question_id": "q-v2"})
    return httpx.Response(201, json={"id": body["trajectory"]["id"], "question_id": "q-v2"})


def refused(exc_type):
    def handler(request):
        raise exc_type("[Errno 111] Connection refused", request=request)
    return handler


def answer(status, body=None, **headers):
    return lambda request: httpx.Response(status, json=body, headers=headers) if body is not None else \
        httpx.Response(status, headers=headers, text="")


# (name, what is sent, the service's answer, where the line must end)
ANSWERS = [
    ("201 stored", "trajectory", stored(), "stored"),
    ("200 stored", "trajectory", stored(status=200), "stored"),
    ("200 duplicate vote", "vote", answer(200, {"status": "duplicate", "feedback": {}}), "stored"),
    ("201 vote", "vote", answer(201, {"status": "created", "feedback": {}}), "stored"),
    ("409 already stored", "trajectory", answer(409, {"detail": "already stored", "code": "already_stored",
                                                      "question_id": "q"}), "stored"),
    ("409 question closed", "trajectory", closed_then_stored, "stored"),
    ("409 id holds another trajectory", "trajectory",
     answer(409, {"detail": "already stored with other content", "code": "conflict"}), "dead-letter"),
    ("409 without a code", "trajectory", answer(409, {"detail": "something clashes"}), "dead-letter"),
    ("409 vote id taken", "vote", answer(409, {"detail": "feedback id taken", "code": "conflict"}), "dead-letter"),
    ("400 Host not served", "trajectory",
     answer(400, {"detail": "host 10.0.0.5 is not served here", "code": "host_not_allowed"}), "spooled"),
    ("400 proxy page", "trajectory", answer(400), "spooled"),
    ("400 invalid data", "trajectory", answer(400, {"detail": "not valid Unicode", "code": "invalid"}),
     "dead-letter"),
    ("401 no token", "trajectory", answer(401, {"detail": "a token is needed"}), "spooled"),
    ("403 wrong role", "trajectory", answer(403, {"detail": "this needs an ingest token"}), "spooled"),
    ("404 no such route", "trajectory", answer(404, {"detail": "Not Found"}), "spooled"),
    ("404 proxy page", "trajectory", answer(404), "spooled"),
    ("404 unknown trajectory (vote)", "vote", answer(404, {"detail": "no trajectory", "code": "not_found"}),
     "dead-letter"),
    ("307 redirect", "trajectory", answer(307, location="https://feedback.example/api/trajectories"), "spooled"),
    ("308 redirect", "trajectory", answer(308, location="https://feedback.example/api/trajectories"), "spooled"),
    ("413 too large", "trajectory", answer(413, {"detail": "body too large"}), "dead-letter"),
    ("422 invalid", "trajectory", answer(422, {"detail": [{"loc": ["body"], "msg": "bad", "type": "x"}]}),
     "dead-letter"),
    ("429 busy", "trajectory", answer(429, {"detail": "slow down"}, **{"retry-after": "0"}), "spooled"),
    ("500 bug", "trajectory", answer(500, {"detail": "internal error"}), "spooled"),
    ("503 database down", "trajectory", answer(503, {"detail": "try again"}), "spooled"),
    ("200 from a captive portal", "trajectory",
     lambda request: httpx.Response(200, text="<html>log in</html>", headers={"content-type": "text/html"}),
     "spooled"),
    ("connection refused", "trajectory", refused(httpx.ConnectError), "spooled"),
    ("read timeout", "trajectory", refused(httpx.ReadTimeout), "spooled"),
]


@pytest.mark.parametrize("name,kind,handler,fate", ANSWERS, ids=[a[0] for a in ANSWERS])
def test_every_answer_leaves_the_line_stored_spooled_or_dead_lettered(tmp_path, name, kind, handler, fate):
    seen: list[dict] = []

    def service(request):
        seen.append(json.loads(request.content))
        return handler(request)

    with Recorder("http://service.test", token="tok", spool_dir=tmp_path, transport=httpx.MockTransport(service),
                  **FAST) as recorder:
        if kind == "vote":
            assert recorder.thumbs("some-run", True, end_user="alice")
        else:
            assert recorder.record(run_of())
        recorder.flush(timeout=0.5 if fate == "spooled" else 5)
        stats = recorder.stats()
    # the one line is accounted for exactly once, and never dropped
    assert stats.recorded == 1 and stats.dropped == 0
    assert stats.sent + stats.spooled + stats.failed == 1, stats
    letters = dead_letters(tmp_path)
    if fate == "stored":
        assert stats.sent == 1 and not letters
    elif fate == "spooled":
        assert stats.spooled == 1 and stats.retries >= 1 and not letters
        assert stats.last_error and len(seen) >= 2  # tried again, not given up
    else:
        assert stats.failed == 1 and len(letters) == 1
        assert letters[0]["reason"].startswith(f"HTTP {name.split()[0]}")
        kept = letters[0]["body"] if kind == "trajectory" else letters[0]["body"]["body"]
        assert kept == seen[0]  # kept whole, to send again
    if name == "409 question closed":
        assert [body.get("version") for body in seen] == [None, 2] and stats.moved == 1
    if name == "409 already stored":
        assert stats.duplicates == 1


def test_configuration_errors_say_what_to_fix(tmp_path):
    with Recorder("http://service.test", token="tok", spool_dir=tmp_path, **FAST,
                  transport=httpx.MockTransport(answer(307, location="https://feedback.example/api/trajectories"))
                  ) as recorder:
        recorder.record(run_of())
        recorder.flush(timeout=0.3)
        assert "redirects to https://feedback.example" in recorder.stats().last_error
    with Recorder("http://service.test", token="tok", spool_dir=tmp_path, **FAST,
                  transport=httpx.MockTransport(answer(404, {"detail": "Not Found"}))) as recorder:
        recorder.flush(timeout=0.3)
        assert "no feedback service at http://service.test/api/trajectories" in recorder.stats().last_error


# --- the real service and store: closed questions, conflicting ids -------------------------


@pytest.fixture
def store(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    yield store
    store.close()


def rank(store, question_id: str) -> None:
    ids = [t.id for t in store.list(question_id)]
    store.submit_ranking(Ranking(question_id=question_id, annotator="bob", order=[[i] for i in ids]))


def test_the_store_tells_already_stored_from_closed_from_conflict(store):
    first, second = run_of(), run_of()
    store.add(first, question_id="q")
    store.add(second, question_id="q")
    with pytest.raises(AlreadyStoredError) as again:
        store.add(first, question_id="q")
    assert again.value.question_id == "q"
    rank(store, "q")
    with pytest.raises(AlreadyStoredError):  # a re-send stays a re-send after the ranking
        store.add(first, question_id="q")
    with pytest.raises(QuestionClosedError) as closed:
        store.add(run_of(), question_id="q")
    assert (closed.value.next_version, closed.value.next_question_id) == (2, "q-v2")
    other = run_of(answer="Lyon")
    other.id = first.id
    with pytest.raises(ConflictError, match="other content") as clash:
        store.add(other, question_id="q")
    assert type(clash.value) is ConflictError


def test_the_service_409_says_which_conflict_it_is(store):
    from fastapi.testclient import TestClient

    token = store.create_account("app", "ingest")
    client = TestClient(create_app(store), base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token}"})
    first = run_of()
    body = {"trajectory": json.loads(first.to_json()), "question_id": "q"}
    assert client.post("/api/trajectories", json=body).status_code == 201
    again = client.post("/api/trajectories", json=body)
    assert again.status_code == 409 and again.json()["code"] == "already_stored"
    store.add(run_of(), question_id="q")
    rank(store, "q")
    closed = client.post("/api/trajectories", json={"trajectory": json.loads(run_of().to_json()), "question_id": "q"})
    assert closed.status_code == 409 and closed.json()["code"] == "question_closed"
    assert closed.json()["next_version"] == 2 and closed.json()["next_question_id"] == "q-v2"
    other = run_of(answer="Lyon")
    other.id = first.id
    clash = client.post("/api/trajectories", json={"trajectory": json.loads(other.to_json()), "question_id": "q"})
    assert clash.status_code == 409 and clash.json()["code"] == "conflict"


@pytest.mark.parametrize("through", ["service", "store URL"])
def test_later_runs_of_a_ranked_question_are_stored_under_the_next_version(tmp_path, store, through):
    """N4: the default question id is a hash of the text; once someone ranks it, every later run
    was answered 409 and dropped as 'already stored'."""
    token = store.create_account("app", "ingest")
    qid = question_id_for(QUESTION)
    first = [run_of() for _ in range(2)]
    later = [run_of() for _ in range(5)]
    latest = run_of()
    with serve_in_thread(create_app(store)) as url:
        target = url if through == "service" else store.url
        with Recorder(target, token=token, spool_dir=tmp_path / "spool", **FAST) as recorder:
            for t in first:
                recorder.record(t)
            assert recorder.flush(timeout=10)
            rank(store, qid)
            for t in later:
                recorder.record(t)
            assert recorder.flush(timeout=10)
            rank(store, f"{qid}-v2")
            recorder.record(latest)
            recorder.record(later[0])  # a re-send of a moved run: found stored, not moved again
            assert recorder.flush(timeout=10)
            stats = recorder.stats()
    assert (stats.sent, stats.moved, stats.duplicates, stats.failed) == (9, 6, 1, 0)
    assert sorted(t.id for t in store.list(f"{qid}-v2")) == sorted(t.id for t in later)
    assert [t.id for t in store.list(f"{qid}-v3")] == [latest.id]
    assert not dead_letters(tmp_path / "spool")


@pytest.mark.parametrize("through", ["service", "store URL"])
def test_an_id_that_holds_another_trajectory_is_dead_lettered_not_counted_delivered(tmp_path, store, through):
    token = store.create_account("app", "ingest")
    original = run_of()
    store.add(original, question_id="q")
    impostor = run_of(answer="Lyon")
    impostor.id = original.id
    with (
        serve_in_thread(create_app(store)) as url,
        Recorder(url if through == "service" else store.url, token=token, spool_dir=tmp_path / "spool",
                 **FAST) as recorder,
    ):
        recorder.record(impostor, question_id="q")
        assert recorder.flush(timeout=10)
        stats = recorder.stats()
    assert (stats.sent, stats.failed) == (0, 1)
    [letter] = dead_letters(tmp_path / "spool")
    assert "other content" in letter["reason"] and letter["body"]["trajectory"]["final_answer"] == "Lyon"
    assert store.get(original.id).final_answer == "Paris"


# --- dead letters, replayed once the cause is fixed ----------------------------------------


def test_replay_sends_dead_letters_once_the_cause_is_fixed(tmp_path, store):
    token = store.create_account("app", "ingest")
    run = run_of()
    with serve_in_thread(create_app(store)) as url, Recorder(url, token=token, spool_dir=tmp_path, **FAST) as recorder:
        recorder.thumbs(run.id, True, end_user="alice")  # its trajectory is not stored: 404
        recorder.record(run, question_id="x" * 200)      # too long an id: 422
        assert recorder.flush(timeout=10)
        assert recorder.stats().failed == 2
        assert recorder.replay_dead_letters().model_dump(exclude={"dead_letter", "last_error"}) == {
            "stored": 0, "duplicates": 0, "refused": 2, "kept": 2}
        store.add(run, question_id="q")  # the cause of the 404 is fixed
        report = recorder.replay_dead_letters()
    assert (report.stored, report.refused, report.kept) == (1, 1, 1) and "HTTP 422" in report.last_error
    assert [v.end_user for v in store.end_user_feedback("q")] == ["alice"]
    [left] = dead_letters(tmp_path)
    assert left["body"]["question_id"] == "x" * 200 and "HTTP 422" in left["reason"]


def test_replay_stops_while_the_target_fails_and_keeps_every_letter(tmp_path):
    answers = iter([answer(413, {"detail": "too large"})] * 2 + [refused(httpx.ConnectError)] * 10)
    with Recorder("http://service.test", token="tok", spool_dir=tmp_path, **FAST,
                  transport=httpx.MockTransport(lambda request: next(answers)(request))) as recorder:
        recorder.record(run_of())
        recorder.record(run_of())
        assert recorder.flush(timeout=5)
        before = (tmp_path / "dead-letter.jsonl").read_text()
        report = recorder.replay_dead_letters()
    assert (report.stored, report.refused, report.kept) == (0, 0, 2) and "ConnectError" in report.last_error
    assert (tmp_path / "dead-letter.jsonl").read_text() == before  # untouched


def test_cli_replays_dead_letters_into_a_store(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    spool = tmp_path / "spool"
    run = run_of()
    with Recorder(db, spool_dir=spool, **FAST) as recorder:
        recorder.thumbs(run.id, True, end_user="alice")  # no such trajectory yet: dead-lettered
        assert recorder.flush(timeout=10) and recorder.stats().failed == 1
    with pytest.raises(SystemExit) as failed:
        main(["feedback", "replay-dead-letters", "--target", db, "--spool", str(spool)])
    assert failed.value.code != 0 and "1 dead letters not stored" in capsys.readouterr().err
    with TrajectoryStore(db) as fixed:
        fixed.add(run, question_id="q")
    main(["feedback", "replay-dead-letters", "--target", db, "--spool", str(spool)])
    assert "1 stored" in capsys.readouterr().out
    assert not (spool / "dead-letter.jsonl").exists()
    with TrajectoryStore(db) as after:
        assert len(after.end_user_feedback("q")) == 1
