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


# --- round 3 (issue 31) ---------------------------------------------------------------------
# Each failed on the service before the request gate: bodies were read and parsed before the
# token check, with no size limit, on the event loop; no write quotas; and the Low items.

SMALL = {"/api/trajectories": 4000, "/api/rankings": 1000, "/api/feedback": 500}


@pytest.fixture
def gated(store_url):
    from rankact.alignment.feedback.service.limits import ServiceLimits

    store = TrajectoryStore(store_url)  # SQLite, and PostgreSQL when configured
    load_sample_data(store)
    tokens = {"bob": store.create_annotator("bob"), "admin": store.create_account("root", "admin"),
              "shop": store.create_account("shop", "ingest"), "blog": store.create_account("blog", "ingest")}
    limits = ServiceLimits(body_bytes=SMALL, writes_per_minute=5, write_bytes_per_hour=20_000, body_seconds=0.5)
    app = create_app(store, limits=limits)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield store, client, {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}, app
    client.close()
    store.close()


async def _call(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes] | None):
    """Run one request through the ASGI app by hand; `chunks` None: a client that never sends
    its body. Returns (status, headers, body, how many times the app asked for body bytes)."""
    import anyio

    asked, sent = 0, []
    raw_headers = [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": raw_headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    pending = list(chunks or [])

    async def receive():
        nonlocal asked
        asked += 1
        if chunks is None:
            await anyio.sleep(60)
        if not pending:
            await anyio.sleep(60)  # only a disconnect would come now
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    with anyio.fail_after(10):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body or b"null"), asked


def _asgi(app, *args):
    import anyio

    return anyio.run(_call, app, *args)


BIG_BODY = b"[" + b"{}," * 100_000 + b"{}]"


@pytest.mark.parametrize("path,headers,status", [
    ("/api/trajectories", {}, 401),                                   # no token
    ("/api/trajectories", {"Authorization": "Bearer nope"}, 401),      # unknown token
    ("/api/rankings", "shop", 403),                                    # a role the route does not admit
    ("/no/such/path", {}, 404),
    ("/no/such/path", "admin", 404),
    ("/api/questions", "admin", 405),                                  # a route that takes no body
])
def test_no_body_is_read_before_the_sender_is_known_and_allowed(gated, path, headers, status):
    _store, _client, auth, app = gated
    headers = auth[headers] if isinstance(headers, str) else headers
    got, answer_headers, answer, asked = _asgi(app, "POST", path, {**headers, "Content-Type": "application/json",
                                                                   "Content-Length": str(len(BIG_BODY))}, [BIG_BODY])
    assert got == status, answer
    assert asked == 0  # the body was never asked for, let alone parsed
    assert answer_headers.get("connection") == "close"  # and the rest of it is not waited for


def test_a_body_over_the_route_limit_is_413_before_or_while_it_streams(gated):
    _store, client, auth, app = gated
    big = json.dumps({"end_user": "u", "trajectory_id": "x", "thumbs": "up", "comment": "c" * 600}).encode()
    announced = client.post("/api/feedback", headers={**auth["shop"], "Content-Type": "application/json"}, content=big)
    assert announced.status_code == 413 and "at most 500 bytes" in announced.json()["detail"]
    assert "--max-body-bytes" in announced.json()["detail"]
    # no Content-Length (chunked): counted as it arrives, refused once past the limit
    status, _h, answer, asked = _asgi(app, "POST", "/api/feedback", {**auth["shop"], "Content-Type": "application/json"},
                                      [big[:300], big[300:600], big[600:]])
    assert status == 413 and asked == 2, answer
    # the same vote within the limit goes through, and trajectories have their own, larger limit
    small = {"end_user": "u", "trajectory_id": load_ids(client, auth)[0], "thumbs": "up"}
    assert client.post("/api/feedback", headers=auth["shop"], json=small).status_code == 201


def load_ids(client, auth) -> list[str]:
    return [t["id"] for t in client.get("/api/trajectories", headers=auth["admin"]).json()]


def test_a_body_that_does_not_arrive_in_time_is_408(gated):
    _store, _client, auth, app = gated
    status, _h, answer, _asked = _asgi(app, "POST", "/api/feedback", {**auth["shop"], "Content-Type": "application/json"},
                                       None)
    assert status == 408 and "0.5 s" in answer["detail"]


@pytest.mark.parametrize("content_type", ["text/plain; a=json", "text/plain", "application/x-www-form-urlencoded",
                                          None, "application/jsonx"])
def test_only_json_media_types_are_parsed_as_json(gated, content_type):
    store, client, auth, _app = gated
    vote = json.dumps({"end_user": "u", "trajectory_id": store.trajectory_ids(QID)[0], "thumbs": "up"})
    headers = {**auth["shop"], **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/api/feedback", headers=headers, content=vote)
    assert response.status_code == 415 and "application/json" in response.json()["detail"]
    for json_type in ("application/json; charset=utf-8", "application/vnd.rankact+json"):
        ok = client.post("/api/feedback", headers={**auth["shop"], "Content-Type": json_type}, content=vote)
        assert ok.status_code in (200, 201), ok.text


def test_json_is_parsed_and_validated_once_in_a_worker_thread(gated, monkeypatch):
    import threading

    import starlette.requests

    from rankact.alignment.feedback.records.end_user import FeedbackIn
    from rankact.alignment.feedback.service import request_gate

    store, client, auth, _app = gated
    threads, validated_in = [], []
    real = request_gate.parse_strict_json
    monkeypatch.setattr(request_gate, "parse_strict_json",
                        lambda body: threads.append(threading.current_thread()) or real(body))
    real_validate = FeedbackIn.model_validate
    monkeypatch.setattr(FeedbackIn, "model_validate",
                        lambda value: validated_in.append(threading.current_thread()) or real_validate(value))

    class NoSecondParse:
        def loads(self, *_args, **_kwargs):
            raise AssertionError("the route parsed the body again")

    monkeypatch.setattr(starlette.requests, "json", NoSecondParse())
    loop_threads = []

    @client.app.middleware("http")
    async def note_loop_thread(request, call_next):
        loop_threads.append(threading.current_thread())
        return await call_next(request)

    vote = {"end_user": "u", "trajectory_id": store.trajectory_ids(QID)[0], "thumbs": "up"}
    response = client.post("/api/feedback", headers=auth["shop"], json=vote)
    assert response.status_code == 201, response.text
    assert len(threads) == 1 and threads[0] not in loop_threads
    assert validated_in == threads  # the route took the model as it was, not validating again
    # an invalid body is the app's usual 422 list, from the gate
    invalid = client.post("/api/feedback", headers=auth["shop"], json={"end_user": "", "thumbs": "sideways"})
    assert invalid.status_code == 422 and {tuple(e["loc"]) for e in invalid.json()["detail"]} >= {
        ("body", "end_user"), ("body", "thumbs")}


def test_writes_per_minute_per_account_are_429_with_retry_after(gated):
    store, client, auth, _app = gated
    tid = store.trajectory_ids(QID)[0]
    statuses = [client.post("/api/feedback", headers=auth["shop"],
                            json={"end_user": f"u{i}", "trajectory_id": tid, "thumbs": "up"}).status_code
                for i in range(6)]
    assert statuses == [201] * 5 + [429]
    refused = client.post("/api/feedback", headers=auth["shop"], json={"end_user": "late", "trajectory_id": tid,
                                                                       "thumbs": "up"})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "'shop' may send 5 a minute" in refused.json()["detail"]
    # per account: another app is not held up
    assert client.post("/api/feedback", headers=auth["blog"], json={"end_user": "u", "trajectory_id": tid,
                                                                    "thumbs": "up"}).status_code == 201


def test_write_bytes_per_hour_per_account_are_429(tmp_path):
    from rankact.alignment.feedback.service.limits import ServiceLimits

    store = TrajectoryStore(f"sqlite:///{tmp_path / 'quota.db'}")
    token = store.create_account("shop", "ingest")
    # each body below is about 3 KB: one fits the hour's 5 KB, a second does not
    limits = ServiceLimits(body_bytes={"/api/trajectories": 4000}, writes_per_minute=0, write_bytes_per_hour=5000)
    with TestClient(create_app(store, limits=limits), base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {token}"}
        first = client.post("/api/trajectories", headers=headers, json=_body("Quota one?", "x" * 500))
        assert first.status_code == 201, first.text
        second = client.post("/api/trajectories", headers=headers, json=_body("Quota two?", "y" * 500))
        assert second.status_code == 429 and "bytes an hour" in second.json()["detail"]
        assert int(second.headers["Retry-After"]) > 3000  # the first write leaves the window in an hour
    assert [t.question for t in store.list()] == ["Quota one?"]
    store.close()


def test_sliding_window_counts_any_window_and_says_when_to_retry():
    from rankact.alignment.feedback.service.quotas import WriteQuotas

    now = [1000.0]
    quotas = WriteQuotas(writes_per_minute=2, bytes_per_hour=100, clock=lambda: now[0])
    assert quotas.admit("a") is None and quotas.admit("a") is None
    refusal = quotas.admit("a")
    assert refusal is not None and refusal.retry_after == 60
    now[0] += 30
    assert quotas.admit("a").retry_after == 30
    now[0] += 31
    assert quotas.admit("a") is None  # the first two left the window
    assert quotas.take_bytes("a", 80) is None and quotas.take_bytes("a", 30) is not None
    assert quotas.take_bytes("a", 20) is None and quotas.admit("a", announced_bytes=1) is not None
    assert quotas.admit("b", announced_bytes=100) is None  # per account


def test_every_body_route_is_gated_with_its_roles_and_a_limit(gated):
    from rankact.alignment.feedback.service.request_gate import body_routes

    _store, _client, _auth, app = gated
    from rankact.alignment.feedback.service.limits import ServiceLimits

    gated_routes = {(r.route.path, tuple(sorted(r.route.methods))): (set(r.roles), r.max_bytes)
                    for r in body_routes(app.routes, ServiceLimits(body_bytes=SMALL))}
    assert gated_routes == {("/api/trajectories", ("POST",)): ({"admin", "ingest"}, 4000),
                            ("/api/rankings", ("POST",)): ({"annotator"}, 1000),
                            ("/api/feedback", ("POST",)): ({"admin", "ingest"}, 500)}


def test_next_does_not_unblind_runs(gated):
    _store, client, auth, _app = gated
    nxt = client.get("/api/next", headers=auth["bob"]).json()
    assert len(nxt["trajectories"]) >= 2
    for run in nxt["trajectories"]:
        assert set(run) == {"id", "final_answer", "citations", "steps"}
        assert not {"raw", "seconds", "call_id", "forced_answer"} & {k for s in run["steps"] for k in s}
    assert {s.get("thought") for r in nxt["trajectories"] for s in r["steps"]} - {None}  # what the page shows stays


@pytest.mark.parametrize("trajectory_id", ["", "x" * 129, "x" * 10_000])
def test_trajectory_ids_follow_the_vote_id_rule(red, trajectory_id):
    _store, client, auth, _path = red
    body = _body("Which id?", "this")
    body["trajectory"]["id"] = trajectory_id
    response = client.post("/api/trajectories", headers=auth["admin"], json=body)
    assert response.status_code == 422 and "1 to 128 printable characters" in response.json()["detail"]
    body["trajectory"]["id"] = "x" * 128
    assert client.post("/api/trajectories", headers=auth["admin"], json=body).status_code == 201


def test_a_trajectory_must_answer_the_question_it_is_filed_under(gated):
    store, client, auth, _app = gated
    other = client.post("/api/trajectories", headers=auth["shop"],
                        json=_body("What is the capital of France?", "Paris", question_id="sample-eiffel-year"))
    assert other.status_code == 422 and "is not the text of question sample-eiffel-year" in other.json()["detail"]
    assert store.question("sample-eiffel-year").text not in other.text  # an ingest token may not read questions
    same = client.post("/api/trajectories", headers=auth["shop"],
                       json=_body(store.question("sample-eiffel-year").text, "1889", question_id="sample-eiffel-year"))
    assert same.status_code == 201, same.text


def test_docs_page_has_a_csp_without_cdns_and_cannot_be_framed(gated):
    import base64
    import hashlib
    import re

    _store, client, _auth, _app = gated
    docs = client.get("/docs")
    assert docs.status_code == 200
    csp = docs.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "http" not in csp and "unsafe-eval" not in csp
    script = re.search(r"<script>(.*?)</script>", docs.text, re.DOTALL).group(1)
    assert f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'" in csp
    assert "cdn" not in docs.text.lower() and docs.headers["x-frame-options"] == "DENY"
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404  # FastAPI's ReDoc page loads from a CDN


def _serve_error(capsys, *args: str) -> str:
    import uvicorn

    from rankact.cli.main import main

    def never(*_args, **_kwargs):
        raise AssertionError("the server started")

    uvicorn.run, real_run = never, uvicorn.run
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", *args])
    finally:
        uvicorn.run = real_run
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    return err


def test_serve_refuses_an_empty_allowed_host(tmp_path, capsys):
    err = _serve_error(capsys, "--db", str(tmp_path / "s.db"), "--allowed-host", "")
    assert "--allowed-host '' names no host" in err
    with pytest.raises(ValueError, match="names no host"):
        create_app(TrajectoryStore("sqlite://"), allowed_hosts=[" "])


def test_serve_on_a_busy_port_or_a_bad_host_says_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = _serve_error(capsys, "--db", str(tmp_path / "s.db"), "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in err
    err = _serve_error(capsys, "--db", str(tmp_path / "s.db"), "--host", "no-such-host.invalid")
    assert "cannot listen on no-such-host.invalid:8000" in err


def test_serve_passes_body_and_write_limits(tmp_path, monkeypatch, capsys):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app))
    monkeypatch.setattr("rankact.alignment.feedback.service.server.listen_problem", lambda host, port: None)
    from rankact.cli.main import main

    db = tmp_path / "limits.db"
    main(["serve", "--db", str(db), "--max-body-bytes", "feedback=200", "--writes-per-minute", "1"])
    capsys.readouterr()
    token = TrajectoryStore(f"sqlite:///{db}").create_account("shop", "ingest")
    client = TestClient(seen["app"], base_url="http://127.0.0.1")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    big = json.dumps({"end_user": "u" * 120, "trajectory_id": "t" * 120, "thumbs": "up"})
    assert client.post("/api/feedback", headers=headers, content=big).status_code == 413
    first = client.post("/api/trajectories", headers=headers, content=json.dumps(_body("Limits?", "yes")))
    assert first.status_code == 201, first.text
    again = client.post("/api/trajectories", headers=headers, content=json.dumps(_body("Limits 2?", "yes")))
    assert again.status_code == 429 and "Retry-After" in again.headers
    for bad, message in ((["--max-body-bytes", "votes=10"], "no route 'votes'"),
                         (["--max-body-bytes", "0"], "at least 1 byte"),
                         (["--max-body-bytes", "10", "--write-bytes-per-hour", "5"], "quota (5 bytes) is smaller")):
        assert message in _serve_error(capsys, "--db", str(db), *bad)


def test_an_ingest_token_learns_no_question_ids_from_a_refused_choice(red):
    store, client, _auth, _path = red
    shop = {"Authorization": f"Bearer {store.create_account('shop', 'ingest')}"}
    chosen, rejected = store.trajectory_ids(QID)[0], store.trajectory_ids("sample-eiffel-year")[0]
    response = client.post("/api/feedback", headers=shop, json={"end_user": "u", "chosen_id": chosen,
                                                               "rejected_id": rejected})
    assert response.status_code == 422 and "answer different questions" in response.json()["detail"]
    assert QID not in response.text and "sample-eiffel-year" not in response.text
