"""Who may call what: every /api endpoint against every kind of caller (no token, revoked,
admin, annotator, ingest), token rotation and revocation, closed questions and their new
versions, the Host allowlist and strict JSON in."""
from __future__ import annotations

import json

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.hosts import host_name
from rankact.alignment.feedback.service.strict_json import strict_json_problem
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore, question_id_for

QID = "sample-multiply"
CALLERS = ("none", "revoked", "admin", "annotator", "ingest")


@pytest.fixture
def env(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'roles.db'}")
    load_sample_data(store)
    tokens = {role: store.create_account(role, role) for role in ("admin", "annotator", "ingest")}
    tokens["revoked"] = store.create_account("gone", "annotator")
    store.revoke("gone")
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    headers = {caller: {"Authorization": f"Bearer {token}"} for caller, token in tokens.items()}
    headers["none"] = {}
    yield store, client, headers
    client.close()
    store.close()


def _trajectory_body(store) -> dict:
    t = make_trajectory("A fresh question?", [{"final_answer": "yes"}], final_answer="yes")
    return {"trajectory": json.loads(t.to_json())}


def _ranking_body(store) -> dict:
    return {"question_id": QID, "order": [[i] for i in store.trajectory_ids(QID)]}


def _feedback_body(store) -> dict:
    return {"end_user": "user-7", "trajectory_id": store.trajectory_ids(QID)[0], "thumbs": "up"}


# endpoint -> the callers it admits; everyone else gets 401 (no or revoked token) or 403.
TABLE = [
    ("POST", "/api/trajectories", _trajectory_body, {"admin", "ingest"}, 201),
    ("GET", "/api/trajectories", None, {"admin"}, 200),
    ("GET", "/api/trajectories/{tid}", None, {"admin"}, 200),
    ("GET", "/api/questions", None, {"admin"}, 200),
    ("GET", f"/api/questions/{QID}", None, {"admin"}, 200),
    ("GET", "/api/me", None, {"admin", "annotator", "ingest"}, 200),
    ("GET", "/api/next", None, {"annotator"}, 200),
    ("POST", "/api/rankings", _ranking_body, {"annotator"}, 201),
    ("GET", "/api/rankings", None, {"admin", "annotator"}, 200),
    ("POST", "/api/feedback", _feedback_body, {"admin", "ingest"}, 201),  # an app relays its end users' votes
    ("GET", "/api/feedback", None, {"admin"}, 200),
    ("GET", "/api/export", None, {"admin"}, 200),
    ("GET", "/api/stats", None, {"admin"}, 200),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method,path,body,admitted,ok", TABLE, ids=[f"{m} {p}" for m, p, *_ in TABLE])
def test_endpoint_by_role(env, method, path, body, admitted, ok, caller):
    store, client, headers = env
    path = path.format(tid=store.trajectory_ids(QID)[0])
    response = client.request(method, path, headers=headers[caller], json=body(store) if body else None)
    if caller in admitted:
        assert response.status_code == ok, response.text
    elif caller in ("none", "revoked"):
        assert response.status_code == 401, response.text
    else:
        assert response.status_code == 403, response.text
        assert "this needs" in response.json()["detail"] and caller in response.json()["detail"]


def test_the_table_covers_every_api_route_and_each_names_its_roles(env):
    _store, client, _headers = env
    routes = [r for r in client.app.routes if isinstance(r, APIRoute) and r.path.startswith("/api")]
    tested = {(m, p.split("{")[0].replace(QID, "")) for m, p, *_ in TABLE}
    for route in routes:
        for method in route.methods:
            assert (method, route.path.split("{")[0]) in tested, (method, route.path)
        roles = [d.call.roles for d in route.dependant.dependencies if hasattr(d.call, "roles")]
        assert roles, f"{route.path} admits anyone: give it a role (alignment.feedback.service.auth)"


def test_rotate_and_revoke(env):
    store, client, headers = env
    old = headers["annotator"]
    new = {"Authorization": f"Bearer {store.rotate_token('annotator')}"}
    assert client.get("/api/me", headers=old).status_code == 401
    assert client.get("/api/me", headers=new).json() == {**client.get("/api/me", headers=new).json(),
                                                        "name": "annotator", "role": "annotator", "revoked": False}
    store.revoke("annotator")
    assert client.get("/api/me", headers=new).status_code == 401
    back = {"Authorization": f"Bearer {store.rotate_token('annotator')}"}
    assert client.get("/api/me", headers=back).status_code == 200
    assert [a.name for a in store.accounts(role="annotator") if a.revoked] == ["gone"]


def test_a_ranked_question_takes_new_trajectories_only_as_a_new_version(env):
    store, client, headers = env
    assert client.post("/api/rankings", headers=headers["annotator"], json=_ranking_body(store)).status_code == 201
    text = store.question(QID).text
    late = json.loads(make_trajectory(text, [{"final_answer": "391"}], final_answer="391").to_json())
    closed = client.post("/api/trajectories", headers=headers["ingest"], json={"trajectory": late, "question_id": QID})
    assert closed.status_code == 409
    assert f"{QID}-v2" in closed.json()["detail"] and '"version": 2' in closed.json()["detail"]
    moved = client.post("/api/trajectories", headers=headers["ingest"],
                        json={"trajectory": late, "question_id": QID, "version": 2})
    assert moved.status_code == 201 and moved.json()["question_id"] == f"{QID}-v2"
    assert store.trajectory_ids(f"{QID}-v2") == [late["id"]] and len(store.trajectory_ids(QID)) == 3
    # without a question id the version goes on the text's hash
    other = json.loads(make_trajectory("Brand new?", [{"final_answer": "a"}], final_answer="a").to_json())
    response = client.post("/api/trajectories", headers=headers["admin"], json={"trajectory": other, "version": 3})
    assert response.json()["question_id"] == question_id_for("Brand new?", 3) == question_id_for("Brand new?") + "-v3"


def test_token_ids_must_lie_in_the_vocabulary(env, tmp_path):
    store, _client, headers = env
    client = TestClient(create_app(store, vocab_size=100), base_url="http://localhost", raise_server_exceptions=False)
    t = json.loads(make_trajectory("Tokens?", [{"final_answer": "a"}], final_answer="a").to_json())
    for ids, status in (([0, 99], 201), ([100], 422), ([-1], 422)):
        t["segments"][0]["token_ids"] = ids
        t["id"] = f"tokens-{ids[0]}"
        response = client.post("/api/trajectories", headers=headers["ingest"], json={"trajectory": t})
        assert response.status_code == status, (ids, response.text)
        if status == 422:
            assert "outside the vocabulary [0, 100)" in response.json()["detail"]


@pytest.mark.parametrize("header,name", [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "[::1]"), ("::1", "[::1]"),
                                         ("LocalHost", "localhost"), ("localhost.:80", "localhost"), ("", "")])
def test_host_name(header, name):
    assert host_name(header) == name


def test_allowed_hosts_add_to_loopback_and_star_allows_any(env):
    store, _client, headers = env
    app = create_app(store, allowed_hosts=["ranking.lab.example"])
    with TestClient(app, base_url="http://ranking.lab.example", raise_server_exceptions=False) as client:
        assert client.get("/api/me", headers=headers["admin"]).status_code == 200
        assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    with TestClient(create_app(store, allowed_hosts=["*"]), base_url="http://anything.example") as client:
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("body,problem", [
    (b'{"a": NaN}', "NaN and Infinity"), (b'{"a": [1, -Infinity]}', "NaN and Infinity"),
    (b'{"a": 1e400}', "too large"), (b'{"a": 9007199254740992}', "body.a: integer"),
    (b'{"a": [-9007199254740992]}', "body.a[0]: integer"), (b'{"a": "\\udc00"}', "lone surrogate"),
    (b'{"a": "\xed\xa0\x80"}', "not strict JSON"), (b"[" * 300 + b"]" * 300, "recursion"),
])
def test_strict_json_problems(body, problem):
    assert problem in strict_json_problem(body)


@pytest.mark.parametrize("body", [b'{"a": 9007199254740991, "b": -1.5e300, "c": "\\ud83d\\ude00 \\u0000"}', b"[]"])
def test_strict_json_accepts_what_reads_back(body):
    assert strict_json_problem(body) is None
