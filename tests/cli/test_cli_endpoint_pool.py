"""`--model "http://a/v1,http://b/v1"` on the command line: one pool of endpoints."""
from __future__ import annotations

import json
import socket

import pytest
from served_stub import ServedStub

from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.cli.main import main


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_ask_says_so_in_one_line_when_every_endpoint_is_down(capsys):
    spec = f"{_closed_port_url()},{_closed_port_url()}"
    with pytest.raises(SystemExit) as info:
        main(["ask", "What is 2+2?", "--model", spec])
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "all 2 endpoints failed" in err[0]


def test_collect_over_a_pool_stores_every_trajectory_within_the_limit(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps({"id": f"q{i}", "question": f"What is {i}+1?", "answers": [str(i + 1)]})
                               for i in range(3)))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    stubs = [ServedStub([], delay=0.05), ServedStub([], delay=0.05)]
    with stubs[0] as a, stubs[1] as b:
        main(["collect", str(tasks), "--samples", "2", "--db", db, "--model", f"{a},{b}", "--format", "native",
              "--max-in-flight", "1"])
    chats = [len(s.bodies("/v1/chat/completions")) for s in stubs]
    assert chats == [3, 3]  # six one-turn runs shared out
    assert [s.peak for s in stubs] == [1, 1]
    with TrajectoryStore(db) as store:
        assert len(store.list()) == 6
