"""Property: whatever trajectory body is valid by the schema (any text, finite numbers, ints in
the JSON-safe range, token ids in the vocabulary) is either refused with a 4xx or stored and
read back equal through every read: the list, by id, an annotator's queue and the export."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankact.agent.trajectory import Trajectory
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.strict_json import MAX_SAFE_INT
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

_text = st.text(max_size=40)  # hypothesis leaves out lone surrogates: they are not valid text
_int = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
_float = st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(st.none() | st.booleans() | _int | _float | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)
_zone = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-12 * 60, 14 * 60))
_when = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zone)
_step = st.fixed_dictionaries({
    "index": st.integers(0, 1000), "thought": st.none() | _text, "action": st.none() | _text,
    "action_input": st.none() | _text | st.dictionaries(_text, _json, max_size=3), "observation": st.none() | _text,
    "error": st.none() | st.fixed_dictionaries({"kind": st.sampled_from(["parse", "tool", "timeout"]),
                                                "message": _text}),
    "raw": _text, "final_answer": st.none() | _text, "seconds": _float,
})
_segment = st.fixed_dictionaries({
    "role": st.sampled_from(["prompt", "generated", "observation"]), "text": _text,
    "token_ids": st.none() | st.lists(st.integers(0, 2**24 - 1), max_size=8), "forced": st.booleans(),
})
_trajectory = st.fixed_dictionaries({
    "id": st.text(min_size=1, max_size=30), "question": _text, "created_at": _when.map(datetime.isoformat),
    "model": st.fixed_dictionaries({"backend": _text, "name": _text, "revision": st.none() | _text}),
    "prompt_version": _text, "status": st.sampled_from(["finished", "max_steps", "loop", "error"]),
    "final_answer": st.none() | _text, "citations": st.lists(st.fixed_dictionaries(
        {"chunk_id": _text, "source": st.none() | _text}), max_size=2),
    "steps": st.lists(_step, max_size=3), "segments": st.lists(_segment, max_size=3),
    "usage": st.fixed_dictionaries({"prompt_tokens": st.integers(0, MAX_SAFE_INT), "seconds": _float}),
    "sampling": st.dictionaries(_text, _json, max_size=3), "metadata": st.dictionaries(_text, _json, max_size=3),
})


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    store = TrajectoryStore(f"sqlite:///{tmp_path_factory.mktemp('roundtrip') / 'r.db'}")
    tokens = {role: store.create_account(role, role) for role in ("admin", "annotator", "ingest")}
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield store, client, {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()}
    client.close()
    store.close()


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(pair=st.lists(_trajectory, min_size=2, max_size=2, unique_by=lambda t: t["id"]), question_id=_text)
def test_posted_trajectories_read_back_everywhere(service, pair, question_id):
    store, client, auth = service
    qid = f"q{len(store.questions())}"  # a fresh question each time: two trajectories, then read
    accepted = []
    for body in pair:
        body["id"] = f"{qid}-{body['id']}"  # ids unique across examples, as real ones are
        response = client.post("/api/trajectories", headers=auth["ingest"],
                               json={"trajectory": body, "question_id": qid, "gold": [question_id]})
        assert response.status_code < 500, response.text
        if response.status_code == 201:
            accepted.append(Trajectory.model_validate(body))
        else:
            assert response.status_code in (409, 422) and response.json()["detail"], response.text
    for sent in accepted:
        got = client.get(f"/api/trajectories/{quote(sent.id, safe='')}", headers=auth["admin"])
        assert got.status_code == 200 and Trajectory.model_validate(got.json()) == sent
    listed = client.get("/api/trajectories", params={"question_id": qid}, headers=auth["admin"])
    assert listed.status_code == (200 if accepted else 404)
    if accepted:
        assert sorted(t["id"] for t in listed.json()) == sorted(t.id for t in accepted)
    assert client.get("/api/trajectories", headers=auth["admin"]).status_code == 200
    assert client.get("/api/questions", headers=auth["admin"]).status_code == 200
    nxt = client.get("/api/next", headers=auth["annotator"])
    assert nxt.status_code == 200, nxt.text
    if nxt.json()["question"]:
        order = [[t["id"]] for t in nxt.json()["trajectories"]]
        ranked = client.post("/api/rankings", headers=auth["annotator"],
                             json={"question_id": nxt.json()["question"]["id"], "order": order})
        assert ranked.status_code == 201, ranked.text
    for format in ("pairs", "trl", "rankings"):
        assert client.get("/api/export", params={"format": format}, headers=auth["admin"]).status_code == 200
    assert client.get("/api/stats", headers=auth["admin"]).status_code == 200
    assert store.damaged_ids() == []
