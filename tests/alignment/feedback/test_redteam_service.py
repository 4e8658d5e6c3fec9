"""Red team, issue 15: the feedback service's reproducers (failures 1, 2, 3 and 6), each as
it was reported, so none can come back. They use only what the service had before the
fix (an admin made with `create_annotator(..., is_admin=True)`), so each failed then.
The held properties have their own tests: concurrency (test_api_concurrency), random
requests never 500 (test_api_feedback), markup stays text (test_browser_ranking)."""
from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

QID = "sample-multiply"


@pytest.fixture
def red(store_url):
    """On SQLite and on PostgreSQL (`store_url`); `path` is the SQLite file, None on PostgreSQL."""
    path = store_url.removeprefix("sqlite:///") if store_url.startswith("sqlite:") else None
    store = TrajectoryStore(store_url)
    load_sample_data(store)
    tokens = {"bob": store.create_annotator("bob"), "mallory": store.create_annotator("mallory"),
              "admin": store.create_annotator("root", is_admin=True)}
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield store, client, {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}, path
    client.close()
    store.close()


def _body(question: str, answer: str, **extra) -> dict:
    trajectory = json.loads(make_trajectory(question, [{"thought": "sure", "final_answer": answer}],
                                            final_answer=answer).to_json())
    return {"trajectory": trajectory, **extra}


# --- failure 1: roles were not enforced ---------------------------------------------------


def test_an_annotator_cannot_inject_a_trajectory_into_a_ranked_question(red):
    store, client, auth, _path = red
    ids = store.trajectory_ids(QID)
    ranking = {"question_id": QID, "order": [[i] for i in ids]}
    assert client.post("/api/rankings", headers=auth["bob"], json=ranking).status_code == 201

    question = store.question(QID).text
    injected = client.post("/api/trajectories", headers=auth["mallory"],
                           json=_body(question, "INJECTED", question_id=QID))
    assert injected.status_code == 403, injected.text
    created = client.post("/api/trajectories", headers=auth["mallory"], json=_body("A new question?", "x"))
    assert created.status_code == 403

    # bob's identical re-submission still matches the question's trajectories
    again = client.post("/api/rankings", headers=auth["bob"], json=ranking)
    assert again.status_code == 200, again.text
    assert "INJECTED" not in client.get("/api/export", headers=auth["admin"]).text


def test_even_an_admin_cannot_add_to_a_ranked_question(red):
    store, client, auth, _path = red
    ids = store.trajectory_ids(QID)
    client.post("/api/rankings", headers=auth["bob"], json={"question_id": QID, "order": [ids]})
    late = client.post("/api/trajectories", headers=auth["admin"],
                       json=_body(store.question(QID).text, "late", question_id=QID))
    assert late.status_code == 409 and "new version" in late.json()["detail"]
    assert store.trajectory_ids(QID) == ids


# --- failure 2: one stored value made the service unusable ----------------------------------


def test_nan_is_refused_and_nothing_unreadable_is_stored(red):
    store, client, auth, _path = red
    body = _body("What is the time?", "noon", question_id="nan")
    text = json.dumps(body).replace('"seconds": 0.0', '"seconds": NaN', 1)
    assert '"seconds": NaN' in text
    response = client.post("/api/trajectories", headers={**auth["admin"], "Content-Type": "application/json"},
                           content=text)
    assert response.status_code == 422 and "NaN" in response.json()["detail"]
    assert client.get("/api/trajectories", headers=auth["admin"]).status_code == 200
    assert len(store.list()) == 9


def _damage(path, trajectory_id: str) -> None:
    """What a NaN posted before the fix left behind: usage.seconds stored as null."""
    if path is None:
        pytest.skip("damages the row through sqlite3")
    with sqlite3.connect(path) as raw:
        raw.execute("""UPDATE trajectories SET data = replace(data, '"seconds":0.0', '"seconds":null')
                       WHERE id = ?""", (trajectory_id,))


def test_a_damaged_row_is_skipped_by_every_read(red, caplog):
    store, client, auth, path = red
    eiffel = store.trajectory_ids("sample-eiffel-year")
    _damage(path, eiffel[0])

    listed = client.get("/api/trajectories", headers=auth["admin"])
    assert listed.status_code == 200 and eiffel[0] not in {t["id"] for t in listed.json()}
    assert len(listed.json()) == 8
    assert "damaged" in caplog.text
    by_question = client.get("/api/trajectories", params={"question_id": "sample-eiffel-year"}, headers=auth["admin"])
    assert by_question.status_code == 200 and len(by_question.json()) == 2
    assert client.get(f"/api/trajectories/{eiffel[0]}", headers=auth["admin"]).status_code == 404
    assert client.get("/api/export", headers=auth["admin"]).status_code == 200

    # bob's queue goes through every question, the damaged one included, and ranks it
    for _ in range(3):
        nxt = client.get("/api/next", headers=auth["bob"])
        assert nxt.status_code == 200, nxt.text
        question = nxt.json()["question"]
        ids = [t["id"] for t in nxt.json()["trajectories"]]
        assert eiffel[0] not in ids
        ranked = client.post("/api/rankings", headers=auth["bob"], json={"question_id": question["id"],
                                                                         "order": [[i] for i in ids]})
        assert ranked.status_code == 201, ranked.text
    assert client.get("/api/next", headers=auth["bob"]).json()["question"] is None


def test_simulate_does_not_crash_on_a_damaged_row(red, capsys):
    from rankact.cli.main import main

    store, _client, _auth, path = red
    _damage(path, store.trajectory_ids(QID)[0])
    main(["feedback", "simulate", "--db", str(path)])
    assert "ranked 3 questions" in capsys.readouterr().out


# --- failure 3: reads needed no token, and any Host was served --------------------------------


@pytest.mark.parametrize("path", ["/api/trajectories", "/api/trajectories/x", "/api/questions",
                                  f"/api/questions/{QID}", "/api/rankings", "/api/export", "/api/stats"])
def test_every_read_needs_a_token(red, path):
    _store, client, _auth, _path = red
    response = client.get(path)
    assert response.status_code == 401 and "token" in response.json()["detail"]


def test_an_annotator_reads_only_their_own_rankings(red):
    store, client, auth, _path = red
    ids = store.trajectory_ids(QID)
    client.post("/api/rankings", headers=auth["bob"], json={"question_id": QID, "order": [ids], "comment": "secret"})
    seen = client.get("/api/rankings", headers=auth["mallory"])
    assert seen.status_code == 200 and seen.json() == []
    assert client.get("/api/rankings", params={"annotator": "bob"}, headers=auth["mallory"]).status_code == 403
    assert client.get("/api/export", headers=auth["mallory"]).status_code == 403
    assert client.get("/api/questions", headers=auth["mallory"]).status_code == 403  # gold answers


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example",
                                  "localhost.", "[::2]", ""])
def test_a_foreign_host_is_refused(red, host):
    _store, client, auth, _path = red
    for path in ("/", "/api/questions", "/static/app.js"):
        response = client.get(path, headers={**auth["admin"], "Host": host})
        if host == "localhost.":  # the same name, fully qualified
            assert response.status_code == 200, path
            continue
        assert response.status_code == 400, (host, path)
        assert "not served" in response.json()["detail"]


# --- failure 6: 500s on bad input -------------------------------------------------------------


@pytest.mark.parametrize("offset", [2**63, 2**64, 10**30])
def test_a_huge_offset_is_422(red, offset):
    _store, client, auth, _path = red
    response = client.get("/api/trajectories", params={"offset": offset}, headers=auth["admin"])
    assert response.status_code == 422


@pytest.mark.parametrize("field", ["id", "question", "thought"])
def test_a_lone_surrogate_is_422(red, field):
    store, client, auth, _path = red
    body = _body("Where?", "here")
    if field == "thought":
        body["trajectory"]["steps"][0]["thought"] = "PLACEHOLDER"
    else:
        body["trajectory"][field] = "PLACEHOLDER"
    text = json.dumps(body).replace("PLACEHOLDER", "a\\ud800b")
    response = client.post("/api/trajectories", headers={**auth["admin"], "Content-Type": "application/json"},
                           content=text)
    assert response.status_code == 422, response.text
    assert "surrogate" in response.json()["detail"]
    assert len(store.list()) == 9
