"""Every command that takes --index answers a bad index folder with one error line."""
from __future__ import annotations

import json

import pytest

from rankact.cli.main import main


@pytest.fixture
def files(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Final Answer: 4"] * 4))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t", "question": "2+2?", "answers": ["4"]}) + "\n")
    (tmp_path / "not-an-index").mkdir()
    (tmp_path / "rm").mkdir()
    return {"script": f"scripted:{script}", "tasks": str(tasks), "bad": str(tmp_path / "not-an-index"),
            "db": f"sqlite:///{tmp_path / 'c.db'}", "out": str(tmp_path / "out"), "rm": str(tmp_path / "rm")}


COMMANDS = {
    "ask": lambda f: ["ask", "2+2?", "--model", f["script"], "--index", f["bad"]],
    "collect": lambda f: ["collect", f["tasks"], "--samples", "1", "--db", f["db"], "--model", f["script"],
                          "--index", f["bad"]],
    "eval": lambda f: ["eval", f["tasks"], "--model", f["script"], "--index", f["bad"]],
    "align ppo": lambda f: ["align", "ppo", "--tasks", f["tasks"], "--reward", f["rm"], "--out", f["out"],
                            "--index", f["bad"]],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_index_is_one_error_line(command, files, capsys):
    with pytest.raises(SystemExit) as info:
        main(COMMANDS[command](files))
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and files["bad"] in lines[0], lines
