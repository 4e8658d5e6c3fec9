"""Every endpoint of the feedback API, with good and bad input. Bad input must get a 4xx
with a message, never a 500 (the client is built with raise_server_exceptions=False so a
500 shows up as a status here instead of an exception)."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankact.agent.trajectory import Trajectory
from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore, shuffled_for

QID = "sample-multiply"


@pytest.fixture
def env(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'api.db'}")
    load_sample_data(store)
    tokens = {name: store.create_annotator(name) for name in ("alice", "bob")}
    tokens["admin"] = store.create_account("root", "admin")
    tokens["ingest"] = store.create_account("recorder", "ingest")
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield store, client, {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}
    client.close()
    store.close()


def _new_trajectory(question="What is the capital of France?") -> Trajectory:
    return make_trajectory(question, [{"thought": "I know this.", "final_answer": "Paris"}], final_answer="Paris")


# --- auth -------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [("GET", "/api/next"), ("GET", "/api/me"),
                                         ("POST", "/api/rankings"), ("POST", "/api/trajectories")])
def test_writes_and_next_need_a_known_token(env, method, path):
    _store, client, _auth = env
    missing = client.request(method, path, json={})
    assert missing.status_code == 401
    assert "missing token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.request(method, path, json={}, headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown token"
    basic = client.request(method, path, json={}, headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert basic.status_code == 401


def test_me(env):
    _store, client, auth = env
    assert client.get("/api/me", headers=auth["bob"]).json()["name"] == "bob"


# --- trajectories and questions ---------------------------------------------------------


def test_post_trajectory_then_get_and_list(env):
    store, client, auth = env
    t = _new_trajectory()
    response = client.post("/api/trajectories", headers=auth["ingest"],
                           json={"trajectory": json.loads(t.to_json()), "question_id": "capital", "gold": ["Paris"]})
    assert response.status_code == 201, response.text
    assert response.json() == {"id": t.id, "question_id": "capital"}
    assert store.get(t.id) == t and store.question("capital").gold == ["Paris"]

    admin = auth["admin"]
    got = client.get(f"/api/trajectories/{t.id}", headers=admin)
    assert got.status_code == 200 and Trajectory.model_validate(got.json()) == t
    listed = client.get("/api/trajectories", params={"question_id": "capital"}, headers=admin).json()
    assert [x["id"] for x in listed] == [t.id]
    assert len(client.get("/api/trajectories", headers=admin).json()) == 10
    assert len(client.get("/api/trajectories", params={"limit": 2}, headers=admin).json()) == 2

    again = client.post("/api/trajectories", headers=auth["admin"], json={"trajectory": json.loads(t.to_json())})
    assert again.status_code == 409 and "already stored" in again.json()["detail"]


def test_trajectory_and_question_404s(env):
    _store, client, auth = env
    for path in ("/api/trajectories/does-not-exist", "/api/questions/does-not-exist"):
        response = client.get(path, headers=auth["admin"])
        assert response.status_code == 404 and "does-not-exist" in response.json()["detail"]
    response = client.get("/api/trajectories", params={"question_id": "nope"}, headers=auth["admin"])
    assert response.status_code == 404


def test_questions_list_counts(env):
    _store, client, auth = env
    questions = {q["id"]: q for q in client.get("/api/questions", headers=auth["admin"]).json()}
    assert set(questions) == {"sample-eiffel-year", "sample-multiply", "sample-eiffel-designer"}
    assert questions[QID]["trajectories"] == 3 and questions[QID]["gold"] == ["391"]
    assert client.get(f"/api/questions/{QID}", headers=auth["admin"]).json()["text"] == "What is 17 multiplied by 23?"


def test_malformed_trajectory_bodies_are_422(env):
    _store, client, auth = env
    headers = {**auth["ingest"], "Content-Type": "application/json"}
    for body in ("{not json", "[]", "null", '{"trajectory": {"question": "q"}}', '{"trajectory": 5}'):
        response = client.post("/api/trajectories", headers=headers, content=body)
        assert response.status_code == 422, body
        assert response.json()["detail"], body


# --- next and rankings ------------------------------------------------------------------


def test_next_is_leased_and_shuffled_per_annotator(env):
    store, client, auth = env
    first = client.get("/api/next", headers=auth["alice"]).json()
    assert first["annotator"] == "alice" and first["question"]["id"] == "sample-eiffel-year"
    assert set(first["question"]) == {"id", "text"}  # no gold answers for the annotator
    expected = [t.id for t in shuffled_for("alice", "sample-eiffel-year", store.list("sample-eiffel-year"),
                                           key=lambda t: t.id)]
    assert [t["id"] for t in first["trajectories"]] == expected
    again = client.get("/api/next", headers=auth["alice"]).json()
    assert [t["id"] for t in again["trajectories"]] == expected  # same order on reload
    bob = client.get("/api/next", headers=auth["bob"]).json()
    assert bob["question"]["id"] != "sample-eiffel-year"  # leased to alice


def test_next_says_how_many_wait_when_others_hold_the_rest(env):
    store, client, auth = env
    for name in ("carol", "dave", "erin"):
        token = store.create_annotator(name)
        assert client.get("/api/next", headers={"Authorization": f"Bearer {token}"}).json()["question"]
    bob = client.get("/api/next", headers=auth["bob"]).json()
    assert bob["question"] is None and bob["waiting"] == 3 and bob["trajectories"] == []


def test_shuffle_differs_between_annotators():
    items = [f"t{i}" for i in range(4)]
    orders = {tuple(shuffled_for(f"annotator-{n}", "q", items)) for n in range(12)}
    assert len(orders) > 1
    assert sorted(next(iter(orders))) == items


def test_rank_everything_then_next_is_empty(env):
    store, client, auth = env
    for _ in range(3):
        nxt = client.get("/api/next", headers=auth["alice"]).json()
        ids = [t["id"] for t in nxt["trajectories"]]
        response = client.post("/api/rankings", headers=auth["alice"],
                               json={"question_id": nxt["question"]["id"], "order": [[i] for i in ids]})
        assert response.status_code == 201, response.text
    done = client.get("/api/next", headers=auth["alice"])
    assert done.status_code == 200 and done.json()["question"] is None and done.json()["waiting"] == 0
    assert len(store.rankings(annotator="alice")) == 3


def test_post_ranking_created_then_idempotent(env):
    store, client, auth = env
    ids = store.trajectory_ids(QID)
    body = {"question_id": QID, "order": [[ids[1]], [ids[0], ids[2]]],
            "flags": [{"trajectory_id": ids[2], "step_index": 0, "reason": "guessed"}], "comment": "B best"}
    first = client.post("/api/rankings", headers=auth["bob"], json=body)
    assert first.status_code == 201 and first.json()["created"] is True
    stored = first.json()["ranking"]
    assert stored["annotator"] == "bob" and stored["source"] == "human" and stored["order"] == body["order"]
    repeat = client.post("/api/rankings", headers=auth["bob"], json=body)
    assert repeat.status_code == 200 and repeat.json()["created"] is False
    assert repeat.json()["ranking"]["id"] == stored["id"]
    [ranking] = store.rankings()
    assert ranking.flags[0].reason == "guessed" and ranking.comment == "B best"


@pytest.mark.parametrize("order,message", [
    ("drop-last", "missing"),
    ("foreign", "not trajectories of this question"),
    ("duplicate", "more than once"),
    ("empty-group", "tie group cannot be empty"),
])
def test_non_permutations_are_422_with_a_message(env, order, message):
    store, client, auth = env
    ids = store.trajectory_ids(QID)
    foreign = store.trajectory_ids("sample-eiffel-year")[0]
    orders = {
        "drop-last": [[ids[0]], [ids[1]]],
        "foreign": [[ids[0]], [ids[1]], [ids[2], foreign]],
        "duplicate": [[ids[0]], [ids[1]], [ids[2], ids[0]]],
        "empty-group": [[ids[0]], [], [ids[1], ids[2]]],
    }
    response = client.post("/api/rankings", headers=auth["alice"], json={"question_id": QID, "order": orders[order]})
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert store.rankings() == []


def test_ranking_unknown_question_is_404(env):
    _store, client, auth = env
    response = client.post("/api/rankings", headers=auth["alice"], json={"question_id": "nope", "order": [["a"]]})
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_malformed_ranking_bodies_are_422(env):
    _store, client, auth = env
    headers = {**auth["alice"], "Content-Type": "application/json"}
    bodies = ["{", "", "[1,2]", '{"question_id": "x"}', '{"question_id": "x", "order": "abc"}',
              '{"question_id": "x", "order": [[1, 2]]}', '{"question_id": "", "order": [["a"]]}',
              '{"question_id": "x", "order": []}', '{"question_id": "x", "order": [["a"]], "flags": [{}]}']
    for body in bodies:
        response = client.post("/api/rankings", headers=headers, content=body)
        assert response.status_code == 422, (body, response.text)
    text = client.post("/api/rankings", headers={**auth["alice"], "Content-Type": "text/plain"}, content="hi")
    assert text.status_code == 415 and "application/json" in text.json()["detail"]  # not JSON: not parsed


def test_list_rankings_with_filters(env):
    store, client, auth = env
    ids = store.trajectory_ids(QID)
    for who in ("alice", "bob"):
        client.post("/api/rankings", headers=auth[who], json={"question_id": QID, "order": [ids]})
    admin = auth["admin"]
    assert len(client.get("/api/rankings", headers=admin).json()) == 2
    assert [r["annotator"] for r in client.get("/api/rankings", params={"annotator": "bob"},
                                               headers=admin).json()] == ["bob"]
    assert client.get("/api/rankings", params={"question_id": "sample-eiffel-year"}, headers=admin).json() == []
    assert client.get("/api/rankings", params={"source": "robot"}, headers=admin).status_code == 422


# --- export, stats, page ---------------------------------------------------------------


def test_export_formats(env):
    store, client, auth = env
    ids = store.trajectory_ids(QID)
    client.post("/api/rankings", headers=auth["alice"], json={"question_id": QID, "order": [[ids[0]], [ids[1]], [ids[2]]]})
    admin = auth["admin"]
    pairs = [json.loads(line) for line in
             client.get("/api/export", params={"format": "pairs"}, headers=admin).text.splitlines()]
    assert [(p["chosen"]["id"], p["rejected"]["id"]) for p in pairs] == [(ids[0], ids[1]), (ids[0], ids[2]),
                                                                          (ids[1], ids[2])]
    assert pairs[0]["chosen"]["segments"]
    trl = [json.loads(line) for line in client.get("/api/export", params={"format": "trl"}, headers=admin).text.splitlines()]
    assert len(trl) == 3 and set(trl[0]) == {"prompt", "chosen", "rejected", "group"}
    rankings = client.get("/api/export", params={"format": "rankings"}, headers=admin)
    assert rankings.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line)["annotator"] for line in rankings.text.splitlines()] == ["alice"]
    bad = client.get("/api/export", params={"format": "csv"}, headers=admin)
    assert bad.status_code == 422


def test_stats_endpoint(env):
    store, client, auth = env
    ids = store.trajectory_ids(QID)
    client.post("/api/rankings", headers=auth["alice"], json={"question_id": QID, "order": [ids]})
    stats = client.get("/api/stats", headers=auth["admin"]).json()
    assert stats["questions"] == 3 and stats["trajectories"] == 9
    assert stats["rankings_by_source"] == {"human": 1} and stats["pairs"] == 0  # all tied


def test_page_static_files_and_docs(env):
    _store, client, _auth = env
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text and "http" not in page.text.split("<body>")[0].lower()
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text  # no CDN
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/trajectories", "/api/trajectories/{trajectory_id}", "/api/questions", "/api/next",
            "/api/rankings", "/api/export"} <= set(paths)


def test_page_never_uses_innerhtml():
    from rankact.alignment.feedback.service.app import STATIC_DIR

    script = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


# --- never a 500 ------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_ranking_like = st.fixed_dictionaries(
    {"question_id": st.one_of(st.just(QID), st.text(max_size=12)),
     "order": st.one_of(_json, st.lists(st.lists(st.text(max_size=8), max_size=3), max_size=3))},
    optional={"flags": _json, "comment": st.one_of(st.text(max_size=30), _json)},
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(_json, _ranking_like), path=st.sampled_from(["/api/rankings", "/api/trajectories"]))
def test_random_bodies_never_500(env_for_fuzz, body, path):
    _store, client, headers = env_for_fuzz
    # json.dumps writes Infinity/NaN for such floats: not JSON, and the server must still answer 422
    response = client.post(path, headers={**headers[path], "Content-Type": "application/json"}, content=json.dumps(body))
    assert response.status_code < 500, (body, response.text)
    assert "detail" in response.json() or response.status_code in (200, 201)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(segment=st.text(min_size=1, max_size=30), query=st.text(max_size=20))
def test_random_paths_and_queries_never_500(env_for_fuzz, segment, query):
    _store, client, headers = env_for_fuzz
    from urllib.parse import quote

    admin = headers["/api/trajectories"]
    for url in (f"/api/trajectories/{quote(segment, safe='')}", f"/api/questions/{quote(segment, safe='')}"):
        assert client.get(url, headers=admin).status_code in (404, 200)
    for params in ({"question_id": query}, {"format": query}, {"limit": query}, {"annotator": query}):
        for path in ("/api/trajectories", "/api/export", "/api/rankings"):
            assert client.get(path, params=params, headers=admin).status_code < 500


@pytest.fixture(scope="module")
def env_for_fuzz(tmp_path_factory):
    store = TrajectoryStore(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'f.db'}")
    load_sample_data(store)
    token = store.create_annotator("fuzzer")
    admin = store.create_account("fuzz-admin", "admin")
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield store, client, {"/api/rankings": {"Authorization": f"Bearer {token}"},
                          "/api/trajectories": {"Authorization": f"Bearer {admin}"}}
    client.close()
    store.close()


def test_unexpected_errors_are_json_and_logged(env, monkeypatch, caplog):
    store, client, auth = env

    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(store, "questions", boom)
    response = client.get("/api/questions", headers=auth["admin"])
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error (logged on the server)"}
    assert "simulated bug" in caplog.text
