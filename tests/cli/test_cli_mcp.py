"""`--mcp` on ask, collect and eval, with a scripted backend and the test MCP server over stdio."""
from __future__ import annotations

import json
import shlex
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from rankact.agent.trajectory import Trajectory
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.tasks import Task, write_tasks
from rankact.cli.main import main

SERVER = shlex.join([sys.executable, str(Path(__file__).parents[1] / "tools" / "mcp_server.py")])
CALLS_ADD = ['Thought: add\nAction: add\nAction Input: {"a": 2, "b": 40}', "Thought: done\nFinal Answer: 42"]


def _script(path: Path, outputs: list[str]) -> str:
    path.write_text(json.dumps(outputs))
    return f"scripted:{path}"


def _no_mcp_thread_left() -> bool:
    return not [t for t in threading.enumerate() if t.name == "rankact-mcp"]


def test_ask_with_an_mcp_server(tmp_path, capsys):
    main(["ask", "What is 2 + 40?", "--model", _script(tmp_path / "s.json", CALLS_ADD), "--mcp", SERVER, "--json"])
    traj = Trajectory.from_json(capsys.readouterr().out)
    assert traj.final_answer == "42" and traj.steps[0].observation == "42" and traj.steps[0].error is None
    assert {"calculator", "add", "pick"} <= {t.name for t in traj.tools}
    assert _no_mcp_thread_left()


@pytest.mark.parametrize("spec, message", [
    # named by its executable only: arguments may hold secrets (red team round 3, N14)
    ("no-such-mcp-server --stdio", "cannot start MCP server 'no-such-mcp-server': command not found"),
    (f"{shlex.quote(sys.executable)} -c 'raise SystemExit(\"no config\")'", "server stderr: no config"),
    ("http://127.0.0.1:9/mcp", "cannot reach MCP server 'http://127.0.0.1:9/mcp'"),
])
def test_a_bad_mcp_server_is_one_error_line(tmp_path, capsys, spec, message):
    with pytest.raises(SystemExit) as info:
        main(["ask", "q", "--model", _script(tmp_path / "s.json", CALLS_ADD), "--mcp", spec])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert _no_mcp_thread_left()


def test_collect_and_eval_give_every_task_the_server_tools(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    write_tasks([Task(id="sum", question="What is 2 + 40?", answers=["42"], metadata={"tools": ["calculator"]})],
                tasks)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    main(["collect", str(tasks), "--samples", "1", "--db", db, "--model", _script(tmp_path / "c.json", CALLS_ADD),
          "--mcp", SERVER])
    with TrajectoryStore(db, create=False) as store:
        (traj,) = store.list("sum")
    assert [t.name for t in traj.tools][:2] == ["calculator", "add"] and traj.steps[0].observation == "42"

    capsys.readouterr()
    main(["eval", str(tasks), "--model", _script(tmp_path / "e.json", CALLS_ADD), "--mcp", SERVER, "--json"])
    (report,) = json.loads(capsys.readouterr().out)
    assert report["success"] == 1.0
    assert _no_mcp_thread_left()


# ---- red team round 3: quoting errors, prefixes from the command line, no secrets echoed ----
HOSTILE = shlex.join([sys.executable, str(Path(__file__).parents[1] / "tools" / "hostile_mcp_server.py")])


def test_an_unsplittable_mcp_command_is_one_line_without_the_command(tmp_path, run_cli):
    code, _, err = run_cli(["ask", "q", "--model", _script(tmp_path / "s.json", CALLS_ADD),
                            "--mcp", "python 'x --api-key=SECRET"])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err  # before: a 51-line traceback
    assert err.startswith("error: cannot read the MCP server command: No closing quotation") and "SECRET" not in err


def test_a_clash_names_the_cli_fix_and_the_prefix_option_applies_it(tmp_path, run_cli):
    calls = ['Action: calculator\nAction Input: {"expression": "2+2"}',
             'Action: h_Calculator\nAction Input: {"expression": "3+3"}', "Final Answer: 6"]
    code, _, err = run_cli(["ask", "q", "--model", _script(tmp_path / "a.json", calls),
                            "--mcp", f"{HOSTILE} caseclash --token=SECRET"])
    assert code == 2 and "differ only by case" in err and "--mcp 'prefix=srv_:COMMAND'" in err
    assert "SECRET" not in err
    code, out, err = run_cli(["ask", "q", "--model", _script(tmp_path / "b.json", calls),
                              "--mcp", f"prefix=h_:{HOSTILE} caseclash", "--json"])
    assert code == 0, err
    traj = Trajectory.from_json(out)
    assert [(s.action, s.observation) for s in traj.steps[:2]] == [
        ("calculator", "4"), ("h_Calculator", 'echo: {"expression": "3+3"}')]


def test_max_tools_from_the_command_line(tmp_path, run_cli):
    script = _script(tmp_path / "s.json", ["Final Answer: 1"])
    code, _, err = run_cli(["ask", "q", "--model", script, "--mcp", f"{HOSTILE} many 200"])
    assert code == 2 and "lists more than 128 tools" in err and "max_tools=N" in err
    code, out, err = run_cli(["ask", "q", "--model", script, "--mcp", f"max_tools=200:{HOSTILE} many 200", "--json"])
    assert code == 0, err
    assert len(Trajectory.from_json(out).tools) == 201  # the calculator and the server's 200
