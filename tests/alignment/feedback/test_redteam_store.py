"""Red team, round 3 (issue 31): the store's findings N2, N3, N5, N16, N17 and N18, each as
it was reported, on SQLite and on PostgreSQL (`store_url`: PostgreSQL runs when
RANKACT_TEST_POSTGRES_URL is set, as `.ci/run` does). Each failed on the store before the fix."""
from __future__ import annotations

import json
import logging
import random
import string
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from rankact.alignment.errors import UnstorableValueError
from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.preferences.export import export_lines
from rankact.alignment.feedback.records.end_user import FeedbackIn
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.cli.main import main

QID = "sample-multiply"
YEAR_ONE = "0001-01-01T00:00:00+05:00"


@pytest.fixture
def red(store_url):
    store = TrajectoryStore(store_url)
    load_sample_data(store)
    tokens = {"admin": store.create_account("root", "admin"), "alice": store.create_account("alice"),
              "shop": store.create_account("shop", "ingest"), "rival": store.create_account("rival", "ingest")}
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield store, client, {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}
    client.close()
    store.close()


def _trajectory(question: str, answer: str = "42", **fields):
    trajectory = make_trajectory(question, [{"thought": "t", "final_answer": answer}], final_answer=answer)
    return trajectory.model_copy(update=fields)


def _body(question: str, answer: str = "42", **extra) -> dict:
    return {"trajectory": json.loads(_trajectory(question, answer).to_json()), **extra}


READS = ("/api/feedback", "/api/export", "/api/export?source=all", "/api/export?format=kto", "/api/stats")


# --- N2: a timestamp before 1970 (1 BC on PostgreSQL) broke every read of the votes -----------


def test_a_vote_dated_in_year_one_is_422_and_every_read_keeps_working(red):
    store, client, auth = red
    tid = store.trajectory_ids(QID)[0]
    response = client.post("/api/feedback", headers=auth["shop"],
                           json={"end_user": "u", "trajectory_id": tid, "thumbs": "up", "created_at": YEAR_ONE})
    assert response.status_code == 422 and "1970" in json.dumps(response.json())
    for path in READS:
        assert client.get(path, headers=auth["admin"]).status_code == 200, path
    with pytest.raises(UnstorableValueError, match="before 1970"):  # the store checks too, not only the API
        unchecked = FeedbackIn(end_user="u", trajectory_id=tid, thumbs="up").model_dump()
        store.add_feedback(FeedbackIn.model_construct(**{**unchecked, "created_at": datetime(1, 1, 2, tzinfo=UTC)}),
                           app="shop")


@pytest.mark.parametrize("created_at", [datetime(1, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, tzinfo=UTC),
                                        datetime.now(UTC) + timedelta(days=2)])
def test_a_trajectory_or_ranking_dated_out_of_range_is_refused(red, created_at):
    store, client, auth = red
    with pytest.raises(UnstorableValueError):
        store.add(_trajectory("When?", created_at=created_at))
    ids = store.trajectory_ids(QID)
    with pytest.raises(UnstorableValueError):
        store.submit_ranking(Ranking(question_id=QID, annotator="alice", order=[ids], created_at=created_at))
    body = _body("When?")
    body["trajectory"]["created_at"] = created_at.isoformat()
    response = client.post("/api/trajectories", headers=auth["shop"], json=body)
    assert response.status_code == 422, response.text
    assert store.rankings() == [] and len(store.list()) == 9


def test_a_moment_with_an_offset_is_stored_in_utc(red):
    store, _client, _auth = red
    tid = store.trajectory_ids(QID)[0]
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
    store.add_feedback(FeedbackIn(end_user="u", trajectory_id=tid, thumbs="up", created_at=when), app="shop")
    assert store.end_user_feedback()[0].created_at == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_a_row_dated_out_of_range_before_the_check_is_skipped_with_a_warning(red, caplog):
    """What the old code stored: a vote and a ranking in year 1 (1 BC on PostgreSQL)."""
    store, client, auth = red
    tid = store.trajectory_ids(QID)[0]
    store.add_feedback(FeedbackIn(end_user="good", trajectory_id=tid, thumbs="up"), app="shop")
    ancient = "'0001-12-31 19:00:00+00 BC'" if store.engine.dialect.name == "postgresql" \
        else "'0001-01-01 00:00:00.000000'"
    with store.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO end_user_feedback (id, feedback_id, slot, kind, question_id, trajectory_id, "
                          f"score, app, end_user, comment, created_at, received_at) VALUES ('old', 'old', 'slot-old', "
                          f"'thumbs', '{QID}', '{tid}', 1.0, 'shop', 'u', '', {ancient}, {ancient})"))
        conn.execute(text(f"INSERT INTO rankings (id, question_id, annotator, created_at, order_json, flags, comment, "
                          f"source) VALUES ('r-old', '{QID}', 'old', {ancient}, '[[\"{tid}\"]]', '[]', '', 'human')"))
    caplog.set_level(logging.WARNING, logger="rankact.store")
    assert [v.end_user for v in store.end_user_feedback()] == ["good"]
    assert store.rankings() == []
    assert "left out of every read" in caplog.text
    for path in READS:
        assert client.get(path, headers=auth["admin"]).status_code == 200, path


# --- N3: a question over ~2.7 KB could not be stored on PostgreSQL (btree row limit) -----------


def test_a_long_question_is_stored_and_read_back(red):
    store, client, auth = red
    # 8 KB of random text (repetitive text compresses below the limit): far past PostgreSQL's
    # 2,704-byte index row
    question = "".join(random.Random(3).choices(string.ascii_letters + " ", k=8000))
    response = client.post("/api/trajectories", headers=auth["shop"], json=_body(question))
    assert response.status_code == 201, response.text
    qid = response.json()["question_id"]
    assert store.question(qid).text == question
    store.add(_trajectory(question, "43"))  # what `rankact collect` does
    assert store.count_trajectories(qid) == 2


class _ProgramLimitExceeded(Exception):
    sqlstate = "54000"


def test_a_data_shaped_database_error_is_422_never_503(red, monkeypatch):
    """A write the database refuses as data fails the same way every time: a recorder told
    503 "try again" retried it forever, with everything behind it undelivered."""
    store, client, auth = red

    def refuse(*_args, **_kwargs):
        raise OperationalError("INSERT ...", {}, _ProgramLimitExceeded("index row size 2816 exceeds maximum 2704"))

    monkeypatch.setattr(store, "add", refuse)
    response = client.post("/api/trajectories", headers=auth["shop"], json=_body("Why?"))
    assert response.status_code == 422 and "2704" in response.json()["detail"]
    with pytest.raises(UnstorableValueError, match="2704"), store.db.write():
        raise OperationalError("INSERT ...", {}, _ProgramLimitExceeded("index row size 2816 exceeds maximum 2704"))


# --- N18: two annotators leased one question; a lease held forever by reloading ---------------


def test_concurrent_leases_never_share_a_question(red):
    store, _client, _auth = red
    barrier = threading.Barrier(12)
    got: dict[str, str | None] = {}

    def lease(name):
        barrier.wait()
        question = store.next_question_for(name)
        got[name] = question.id if question else None

    threads = [threading.Thread(target=lease, args=(f"annotator-{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    leased = [qid for qid in got.values() if qid]
    assert sorted(leased) == sorted(set(leased)) and len(leased) == 3, got


def test_a_lease_renewed_past_the_cap_goes_to_a_waiting_annotator(red):
    store, _client, _auth = red
    held = {name: store.next_question_for(name).id for name in ("a", "b", "c")}  # all three questions
    for _ in range(3):  # nobody waits: reloads keep the lease, however long
        assert store.next_question_for("a", max_hold_seconds=0).id == held["a"]
    assert store.next_question_for("d") is None  # within the cap: d waits
    assert store.next_question_for("d", max_hold_seconds=0).id == held["a"]  # past it: the oldest hold is d's
    assert store.next_question_for("a") is None  # a's reloads no longer hold it; the others are within the cap
    assert store.next_question_for("d").id == held["a"]


# --- N16: squattable vote ids, future-dated votes, lax score types -----------------------------


def test_vote_ids_are_per_app(red):
    store, client, auth = red
    tid = store.trajectory_ids(QID)[0]
    vote = {"end_user": "u", "trajectory_id": tid, "thumbs": "up"}
    derived = FeedbackIn(**vote).derived_id("shop")
    for squatter, squatted in (("x", "fb-1"), ("y", derived)):  # a chosen id and the predictable derived one
        assert client.post("/api/feedback", headers=auth["rival"], json={
            "end_user": squatter, "trajectory_id": tid, "thumbs": "down", "feedback_id": squatted}).status_code == 201
    assert client.post("/api/feedback", headers=auth["shop"], json={**vote, "feedback_id": "fb-1"}).status_code == 201
    assert client.post("/api/feedback", headers=auth["shop"], json={
        "end_user": "v", "trajectory_id": tid, "thumbs": "up"}).status_code == 201
    assert client.post("/api/feedback", headers=auth["shop"], json=vote).status_code in (200, 201)
    assert {(v.app, v.id) for v in store.end_user_feedback()} >= {("rival", "fb-1"), ("shop", "fb-1"),
                                                                   ("rival", derived)}


def test_a_future_dated_vote_cannot_supersede_a_later_change(red):
    store, client, auth = red
    tid = store.trajectory_ids(QID)[0]
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()  # within the allowed clock skew
    first = client.post("/api/feedback", headers=auth["shop"],
                        json={"end_user": "u", "trajectory_id": tid, "thumbs": "up", "created_at": ahead})
    assert first.status_code == 201
    change = client.post("/api/feedback", headers=auth["shop"], json={"end_user": "u", "trajectory_id": tid,
                                                                     "thumbs": "down"})
    assert change.status_code == 201 and change.json()["status"] == "replaced"
    late = (datetime.now(UTC) - timedelta(hours=1)).isoformat()  # a re-send of an older click
    resent = client.post("/api/feedback", headers=auth["shop"],
                         json={"end_user": "u", "trajectory_id": tid, "score": 0.5, "created_at": late})
    assert resent.json()["status"] == "superseded"
    assert [v.score for v in store.end_user_feedback()] == [-1.0]


@pytest.mark.parametrize("score", ["0.5", True, "1"])
def test_a_score_must_be_a_number(red, score):
    store, client, auth = red
    tid = store.trajectory_ids(QID)[0]
    response = client.post("/api/feedback", headers=auth["shop"], json={"end_user": "u", "trajectory_id": tid,
                                                                       "score": score})
    assert response.status_code == 422
    assert client.post("/api/feedback", headers=auth["shop"], json={"end_user": "u", "trajectory_id": tid,
                                                                   "score": 1}).status_code == 201


# --- N17: a writer changed a question under an annotator's lease -------------------------------


def test_a_trajectory_posted_to_a_leased_question_goes_to_its_next_version(red):
    store, client, auth = red
    page = client.get("/api/next", headers=auth["alice"]).json()
    qid, seen = page["question"]["id"], [t["id"] for t in page["trajectories"]]
    added = client.post("/api/trajectories", headers=auth["shop"],
                        json=_body(store.question(qid).text, question_id=qid))
    assert added.status_code == 201 and added.json()["question_id"] == f"{qid}-v2"
    ranked = client.post("/api/rankings", headers=auth["alice"], json={"question_id": qid, "order": [[i] for i in seen]})
    assert ranked.status_code == 201, ranked.text
    assert store.trajectory_ids(f"{qid}-v2") == [added.json()["id"]]


# --- N5: an ingest token steered the default training export; revoking kept its data ----------


def _poison(store, client, auth):
    """shop's own trajectory voted `chosen` over each genuine one by made-up users."""
    body = _body(store.question(QID).text, "MALLORY-ANSWER", question_id=QID)
    own = client.post("/api/trajectories", headers=auth["shop"], json=body).json()["id"]
    for i, genuine in enumerate(store.trajectory_ids(QID)):
        if genuine != own:
            assert client.post("/api/feedback", headers=auth["shop"], json={
                "end_user": f"made-up-{i}", "chosen_id": own, "rejected_id": genuine}).status_code == 201
    return own


def test_end_user_votes_stay_out_of_the_default_export_and_name_their_app(red, tmp_path):
    store, client, auth = red
    _poison(store, client, auth)
    ids = store.trajectory_ids("sample-eiffel-year")
    store.submit_ranking(Ranking(question_id="sample-eiffel-year", annotator="alice", order=[[i] for i in ids]))
    default = [json.loads(line) for line in client.get("/api/export", headers=auth["admin"]).text.splitlines()]
    assert default and {p["source"] for p in default} == {"human"} and "MALLORY" not in json.dumps(default)
    everything = [json.loads(line) for line in
                  client.get("/api/export?source=all", headers=auth["admin"]).text.splitlines()]
    end_user = [p for p in everything if p["source"] == "end-user"]
    assert len(end_user) == 3 and {p["app"] for p in end_user} == {"shop"}
    assert {p["app"] for p in everything if p["source"] == "human"} == {None}
    excluded = client.get("/api/export?source=all&exclude_app=shop", headers=auth["admin"]).text
    assert "MALLORY" not in excluded


def test_thumbs_are_counted_per_app(red):
    store, _client, _auth = red
    up, down = store.trajectory_ids(QID)[:2]
    for app, (good, bad) in (("shop", (up, down)), ("rival", (down, up))):
        store.add_feedback(FeedbackIn(end_user="alice", trajectory_id=good, thumbs="up"), app=app)
        store.add_feedback(FeedbackIn(end_user="alice", trajectory_id=bad, thumbs="down"), app=app)
    pairs = [json.loads(line) for line in export_lines(store, "pairs", "end-user")]
    assert sorted((p["app"], p["chosen"]["id"]) for p in pairs) == sorted([("rival", down), ("shop", up)])
    kto = [json.loads(line) for line in export_lines(store, "kto")]
    assert {row["app"] for row in kto} == {"shop", "rival"} and len(kto) == 4


def test_a_revoked_app_leaves_the_export_and_drop_data_deletes_its_votes(red, tmp_path, capsys):
    store, client, auth = red
    _poison(store, client, auth)
    url, out = store.url, tmp_path / "pairs.jsonl"

    def exported(*options) -> str:
        assert main(["feedback", "export", "--db", url, "--out", str(out), *options]) in (None, 0)
        return out.read_text()

    assert "MALLORY" not in exported()  # default: no end users' votes
    assert "MALLORY" in exported("--source", "all")
    assert "MALLORY" not in exported("--source", "all", "--exclude-app", "shop", "--exclude-app", "rival")
    main(["admin", "revoke", "shop", "--db", url])
    assert "MALLORY" not in exported("--source", "all")
    assert "MALLORY" in exported("--source", "all", "--include-revoked")
    capsys.readouterr()
    main(["admin", "revoke", "shop", "--drop-data", "--db", url])
    assert "deleted 3 end-user votes relayed by shop" in capsys.readouterr().err
    assert store.end_user_feedback() == []
