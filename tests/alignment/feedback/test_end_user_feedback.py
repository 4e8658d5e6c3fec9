"""End users' votes (issue 14, part 4): the service endpoint (roles in test_service_roles),
strict input, idempotent re-sends, a user's later vote replacing the earlier one, damaged rows
skipped, the pairs and the KTO set they export, the stats by source, the CLI, and a v2 store
migrating to v3."""
from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rankact.alignment.feedback.collection.sample_data import load_sample_data
from rankact.alignment.feedback.preferences.agreement import feedback_stats
from rankact.alignment.feedback.preferences.end_user_data import KTORow
from rankact.alignment.feedback.preferences.export import export_lines
from rankact.alignment.feedback.preferences.pairs import PreferencePair, read_pairs
from rankact.alignment.feedback.records.end_user import FeedbackIn
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.store.tables import SCHEMA_VERSION
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.cli.main import main

QID = "sample-multiply"
V2_SCHEMA = Path(__file__).parent / "data" / "store_v2.sql"


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "votes.db"
    store = TrajectoryStore(f"sqlite:///{path}")
    load_sample_data(store)
    tokens = {role: store.create_account(f"{role}-1", role) for role in ("admin", "annotator", "ingest")}
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    auth = {role: {"Authorization": f"Bearer {token}"} for role, token in tokens.items()}
    yield store, client, auth, path
    client.close()
    store.close()


def ids(store, qid=QID) -> list[str]:
    return store.trajectory_ids(qid)


def post(client, auth, body, who="ingest"):
    return client.post("/api/feedback", headers=auth[who], json=body)


# --- the endpoint ---------------------------------------------------------------------------


def test_thumbs_score_and_choice_are_stored_with_their_question_and_source(env):
    store, client, auth, _ = env
    t = ids(store)
    for body in ({"end_user": "u1", "trajectory_id": t[0], "thumbs": "up"},
                 {"end_user": "u2", "trajectory_id": t[0], "score": -0.5, "comment": "slow"},
                 {"end_user": "u1", "chosen_id": t[1], "rejected_id": t[2]}):
        response = post(client, auth, body)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "created"
        assert response.json()["feedback"]["question_id"] == QID
        assert response.json()["feedback"]["source"] == "end-user"
        assert response.json()["feedback"]["app"] == "ingest-1"
    listed = client.get("/api/feedback", headers=auth["admin"]).json()
    assert sorted((v["kind"], v["score"]) for v in listed) == [("choice", None), ("score", -0.5), ("thumbs", 1.0)]
    assert [v["end_user"] for v in client.get("/api/feedback", params={"end_user": "u2"},
                                              headers=auth["admin"]).json()] == ["u2"]


@pytest.mark.parametrize("body,status,message", [
    (b'{"end_user": "u", "trajectory_id": "T0", "score": NaN}', 422, "NaN"),
    (b'{"end_user": "u", "trajectory_id": "T0", "score": 1e400}', 422, "too large"),
    (b'{"end_user": "\\ud800", "trajectory_id": "T0", "thumbs": "up"}', 422, "lone surrogate"),
    (b'{"end_user": "u", "trajectory_id": "T0", "score": 1.5}', 422, "less than or equal to 1"),
    (b'{"end_user": "u", "trajectory_id": "T0", "thumbs": "sideways"}', 422, "'up' or 'down'"),
    (b'{"end_user": "u", "trajectory_id": "T0", "thumbs": "up", "score": 1}', 422, "exactly one of"),
    (b'{"end_user": "u", "trajectory_id": "T0"}', 422, "exactly one of"),
    (b'{"end_user": "u", "trajectory_id": "T0", "scroe": 1}', 422, "Extra inputs"),
    (b'{"end_user": "u", "chosen_id": "T0"}', 422, "both chosen_id and rejected_id"),
    (b'{"end_user": "u", "chosen_id": "T0", "rejected_id": "T0"}', 422, "two different"),
    (b'{"end_user": "u", "chosen_id": "T0", "rejected_id": "OTHER"}', 422, "same question"),
    (b'{"end_user": "u", "trajectory_id": "nope", "thumbs": "up"}', 404, "no trajectory"),
    (b'{"end_user": "", "trajectory_id": "T0", "thumbs": "up"}', 422, "at least 1"),
    (b'{"end_user": "' + b"x" * 129 + b'", "trajectory_id": "T0", "thumbs": "up"}', 422, "at most 128"),
    (b'{"end_user": "a\\nb", "trajectory_id": "T0", "thumbs": "up"}', 422, "pattern"),
    (b'{"end_user": "u", "trajectory_id": "T0", "thumbs": "up", "created_at": "2999-01-01 00:00:00+00:00"}', 422,
     "in the future"),
    (b'{"end_user": "u", "trajectory_id": "T0", "thumbs": "up", "created_at": "yesterday"}', 422, "datetime"),
    (b'[1, 2]', 422, "valid dictionary"),
])
def test_bad_votes_are_4xx_with_a_message_and_store_nothing(env, body, status, message):
    store, client, auth, _ = env
    other = store.trajectory_ids("sample-eiffel-year")[0]
    body = body.replace(b"T0", ids(store)[0].encode()).replace(b"OTHER", other.encode())
    response = client.post("/api/feedback", headers={**auth["ingest"], "Content-Type": "application/json"},
                           content=body)
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json()["detail"])
    assert store.end_user_feedback() == []


def test_a_resend_is_a_duplicate_never_a_second_vote(env):
    store, client, auth, _ = env
    t = ids(store)
    body = {"end_user": "u1", "trajectory_id": t[0], "thumbs": "up", "created_at": "2025-05-01T10:00:00Z"}
    first, again = post(client, auth, body), post(client, auth, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["status"] == "duplicate" and again.json()["feedback"]["id"] == first.json()["feedback"]["id"]
    # with the client's own id: the same id for another vote is a conflict, not a silent overwrite
    mine = {"end_user": "u2", "trajectory_id": t[0], "score": 0.5, "feedback_id": "click-1"}
    assert post(client, auth, mine).status_code == 201
    assert post(client, auth, mine).json()["status"] == "duplicate"
    clash = post(client, auth, {**mine, "end_user": "u3"})
    assert clash.status_code == 409 and "click-1" in clash.json()["detail"]
    assert len(store.end_user_feedback()) == 2


def test_a_users_later_vote_replaces_the_earlier_one_and_an_older_one_never_does(env):
    store, client, auth, _ = env
    t = ids(store)
    at = datetime(2025, 5, 1, tzinfo=UTC)
    up = {"end_user": "u1", "trajectory_id": t[0], "thumbs": "up", "created_at": at.isoformat()}
    down = {**up, "thumbs": "down", "created_at": (at + timedelta(minutes=1)).isoformat()}
    first = post(client, auth, up).json()["feedback"]["id"]
    replaced = post(client, auth, down)
    assert replaced.status_code == 201 and replaced.json()["status"] == "replaced"
    assert replaced.json()["replaced_id"] == first
    late = post(client, auth, up)  # the up vote re-sent after the down one arrived
    assert late.status_code == 200 and late.json()["status"] == "superseded"
    assert late.json()["feedback"]["score"] == -1.0
    assert [(v.end_user, v.score) for v in store.end_user_feedback()] == [("u1", -1.0)]
    # a score replaces thumbs (one opinion per user and trajectory); a choice is judged apart
    post(client, auth, {"end_user": "u1", "trajectory_id": t[0], "score": 0.25})
    post(client, auth, {"end_user": "u1", "chosen_id": t[0], "rejected_id": t[1]})
    flipped = post(client, auth, {"end_user": "u1", "chosen_id": t[1], "rejected_id": t[0]})
    assert flipped.json()["status"] == "replaced"
    assert sorted((v.kind, v.score, v.chosen_id) for v in store.end_user_feedback()) == [
        ("choice", None, t[1]), ("score", 0.25, None)]
    # the same end-user id from another app (here an admin) is another person
    assert post(client, auth, {"end_user": "u1", "trajectory_id": t[0], "thumbs": "up"}, who="admin").status_code == 201
    assert len(store.end_user_feedback()) == 3


def test_a_damaged_vote_is_skipped_by_every_read(env, caplog):
    store, client, auth, path = env
    t = ids(store)
    post(client, auth, {"end_user": "u1", "trajectory_id": t[0], "thumbs": "up"})
    post(client, auth, {"end_user": "u2", "trajectory_id": t[1], "thumbs": "down"})
    with sqlite3.connect(path) as raw:  # edited by hand: thumbs must be +1 or -1, scores within [-1, 1]
        raw.execute("UPDATE end_user_feedback SET score = 7 WHERE end_user = 'u1'")
    listed = client.get("/api/feedback", headers=auth["admin"])
    assert listed.status_code == 200 and [v["end_user"] for v in listed.json()] == ["u2"]
    assert "damaged" in caplog.text
    for path_ in ("/api/stats", "/api/export?source=end-user", "/api/export?format=kto"):
        assert client.get(path_, headers=auth["admin"]).status_code == 200, path_
    assert client.get("/api/stats", headers=auth["admin"]).json()["end_user"]["votes"] == 1


# --- training data ----------------------------------------------------------------------------


@pytest.fixture
def voted(env):
    """t0: two users up, one down (majority up); t1: one down; t2: one up, one down (a tie);
    u4 prefers t2 to t1; an annotator ranks t0 > t1 > t2."""
    store, client, auth, path = env
    t = ids(store)
    for user, trajectory, thumbs in (("u1", 0, "up"), ("u2", 0, "up"), ("u3", 0, "down"), ("u1", 1, "down"),
                                     ("u1", 2, "up"), ("u2", 2, "down")):
        assert post(client, auth, {"end_user": user, "trajectory_id": t[trajectory], "thumbs": thumbs}).status_code == 201
    assert post(client, auth, {"end_user": "u4", "chosen_id": t[2], "rejected_id": t[1]}).status_code == 201
    store.submit_ranking(Ranking(question_id=QID, annotator="ann", order=[[t[0]], [t[1]], [t[2]]]))
    return store, client, auth, path, t


def test_end_user_pairs_from_choices_and_thumbs(voted, tmp_path):
    store, _client, _auth, _path, t = voted
    pairs = [PreferencePair.model_validate_json(line) for line in export_lines(store, "pairs", "end-user")]
    assert [(p.chosen.id, p.rejected.id, p.metadata["signal"], p.annotator) for p in pairs] == [
        (t[2], t[1], "choice", "u4"), (t[0], t[1], "thumbs", None)]  # t2's tie gives no thumbs pair
    assert {p.source for p in pairs} == {"end-user"}
    assert len(pairs[1].metadata["feedback_ids"]) == 4  # the votes on t0 and t1
    annotators = [PreferencePair.model_validate_json(line) for line in export_lines(store, "pairs", "annotator")]
    assert len(annotators) == 3 and {p.source for p in annotators} == {"human"}
    everything = list(export_lines(store, "pairs", "all"))
    assert len(everything) == 5
    # a pair file written from the export reads back with its source
    out = tmp_path / "pairs.jsonl"
    out.write_text("\n".join(everything) + "\n")
    assert [p.source for p in read_pairs(out)] == ["human"] * 3 + ["end-user"] * 2
    trl = [json.loads(line) for line in export_lines(store, "trl", "end-user")]
    assert set(trl[0]) == {"prompt", "chosen", "rejected", "group"}


def test_the_kto_set_labels_each_trajectory_by_majority(voted):
    store, _client, _auth, _path, t = voted
    rows = [KTORow.model_validate_json(line) for line in export_lines(store, "kto")]
    assert sorted((r.trajectory_id, r.label, r.up, r.down) for r in rows) == sorted(
        [(t[0], True, 2, 1), (t[1], False, 0, 1)])
    t0 = next(r for r in rows if r.trajectory_id == t[0])
    trajectory = store.get(t[0])
    assert t0.prompt + t0.completion == "".join(s.text for s in trajectory.segments)
    assert t0.prompt.endswith(f"Question: {trajectory.question}\n")
    with pytest.raises(Exception, match="end users' votes only"):
        list(export_lines(store, "kto", "annotator"))


def test_stats_by_source_and_end_user_agreement_with_annotators(voted):
    store, client, auth, _path, _t = voted
    stats = feedback_stats(store)
    assert stats.pairs_by_source == {"human": 3, "end-user": 2} and stats.pairs == 5
    eu = stats.end_user
    assert (eu.votes, eu.by_kind, eu.up, eu.down, eu.end_users) == (7, {"thumbs": 6, "choice": 1}, 3, 3, 4)
    assert (eu.trajectories_desirable, eu.trajectories_undesirable, eu.trajectories_tied) == (1, 1, 1)
    assert (eu.pairs_from_choices, eu.pairs_from_thumbs) == (1, 1)
    # the annotator ranked t0 > t1 > t2: t0 > t1 agrees, u4's t2 > t1 does not
    assert (eu.annotator_pairs_compared, eu.annotator_agreement_rate) == (2, 0.5)
    assert client.get("/api/stats", headers=auth["admin"]).json()["end_user"]["pairs_from_thumbs"] == 1


def test_cli_export_by_source_and_stats(voted, tmp_path, capsys):
    _store, _client, _auth, path, _t = voted
    out = tmp_path / "kto.jsonl"
    main(["feedback", "export", "--db", str(path), "--format", "kto", "--source", "end-user", "--out", str(out)])
    assert "wrote 2 kto lines (end-user)" in capsys.readouterr().out and len(out.read_text().splitlines()) == 2
    main(["feedback", "export", "--db", str(path), "--source", "annotator", "--out", str(out)])
    assert "wrote 3 pairs lines" in capsys.readouterr().out
    main(["feedback", "export", "--db", str(path), "--format", "feedback", "--out", str(out)])
    assert len(out.read_text().splitlines()) == 7
    main(["feedback", "stats", "--db", str(path)])
    table = capsys.readouterr().out
    assert "end-user votes" in table and "pairs from choices / thumbs" in table and "0.500 over 2 pairs" in table
    for args, message in ((["--source", "users"], "--source must be one of"),
                          (["--format", "kto", "--source", "simulated"], "end users' votes only")):
        with pytest.raises(SystemExit) as info:
            main(["feedback", "export", "--db", str(path), "--out", str(out), *args])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


# --- the store ------------------------------------------------------------------------------


def test_the_store_api_takes_votes_without_the_service(sample_store):
    t = ids(sample_store)
    stored, status, replaced = sample_store.add_feedback(
        FeedbackIn(end_user="u", trajectory_id=t[0], thumbs="down"), app="batch-import")
    assert (status, replaced, stored.score, stored.app) == ("created", None, -1.0, "batch-import")
    with pytest.raises(ValueError, match="unicode"):
        FeedbackIn(end_user="u\ud800", trajectory_id=t[0], thumbs="up")
    with pytest.raises(ValueError, match="unicode"):  # pydantic refuses a lone surrogate in any text
        FeedbackIn(end_user="u", trajectory_id=t[0], thumbs="up", comment="\ud800")


def test_a_v2_store_migrates_to_v3_and_takes_votes(tmp_path):
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(V2_SCHEMA.read_text())
        raw.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    with TrajectoryStore(str(path)) as store:
        load_sample_data(store)
        t = ids(store)
        store.add_feedback(FeedbackIn(end_user="u", trajectory_id=t[0], thumbs="up"), app="app")
        assert [v.score for v in store.end_user_feedback()] == [1.0]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION) == "4"
        assert raw.execute("SELECT count(*) FROM end_user_feedback").fetchone()[0] == 1
    with TrajectoryStore(str(path)) as again:  # opening a migrated store changes nothing
        assert len(again.end_user_feedback()) == 1
