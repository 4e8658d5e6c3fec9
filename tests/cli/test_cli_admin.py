"""`rankact admin`: create each kind of account, rotate and revoke tokens, list; bad input is
one `error:` line with exit code 2. And `rankact serve --allowed-host` reaches the app."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.cli.main import main


def _run(capsys, *args) -> str:
    main(list(args))
    return capsys.readouterr().out.strip()


def test_create_each_role_rotate_revoke_and_list(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'admin.db'}"
    tokens = {role: _run(capsys, "admin", "create", f"{role}-1", "--role", role, "--db", db)
              for role in ("admin", "annotator", "ingest")}
    tokens["legacy"] = _run(capsys, "admin", "create-annotator", "old-style", "--db", db)
    with TrajectoryStore(db) as store:
        assert {k: store.authenticate(t).role for k, t in tokens.items()} == {
            "admin": "admin", "annotator": "annotator", "ingest": "ingest", "legacy": "annotator"}

    new = _run(capsys, "admin", "rotate", "ingest-1", "--db", db)
    _run(capsys, "admin", "revoke", "annotator-1", "--db", db)
    with TrajectoryStore(db) as store:
        assert store.authenticate(tokens["ingest"]) is None and store.authenticate(new).name == "ingest-1"
        assert store.authenticate(tokens["annotator"]) is None
    listing = _run(capsys, "admin", "list", "--db", db)
    assert "admin-1 (admin)\t0 rankings" in listing and "ingest-1 (ingest)\t" in listing
    assert "annotator-1 [revoked]\t" in listing and "old-style\t" in listing


@pytest.mark.parametrize("args,message", [
    (["create", "x", "--role", "root"], "Invalid value"),
    (["create", "   "], "1 to 128 printable characters"),
    (["rotate", "nobody"], "no account named 'nobody'"),
    (["revoke", "nobody"], "no account named 'nobody'"),
    (["create", "dup"], "already exists"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    db = str(tmp_path / "bad.db")
    TrajectoryStore(db).create_account("dup")
    with pytest.raises(SystemExit) as exit_info:
        main(["admin", *args, "--db", db])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err
    if "Invalid value" not in message:  # typer's own usage errors draw a box
        assert err.strip().count("\n") == 0 and err.startswith("error: ")


def test_serve_passes_allowed_hosts_and_vocab_size(tmp_path, monkeypatch, capsys):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app, **kwargs))
    monkeypatch.setattr("rankact.alignment.feedback.service.server.listen_problem", lambda host, port: None)
    db = str(tmp_path / "serve.db")
    main(["serve", "--db", db, "--allowed-host", "rank.example", "--allowed-host", "10.0.0.5",
          "--vocab-size", "50"])
    err = capsys.readouterr().err
    assert "rank.example" in err and "no admin yet" in err
    client = TestClient(seen["app"], raise_server_exceptions=False)
    for host, status in (("rank.example", 200), ("10.0.0.5:8000", 200), ("localhost", 200), ("other.example", 400)):
        assert client.get("/", headers={"Host": host}).status_code == status, host
    token = TrajectoryStore(db).create_account("recorder", "ingest")
    t = make_trajectory("Tokens?", [{"final_answer": "a"}], final_answer="a")
    t.segments[0].token_ids = [50]
    response = client.post("/api/trajectories", headers={"Host": "localhost", "Authorization": f"Bearer {token}"},
                           json={"trajectory": json.loads(t.to_json())})
    assert response.status_code == 422 and "[0, 50)" in response.json()["detail"]
