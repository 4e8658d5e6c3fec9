"""`rankact ask` on a scripted backend: live output, --json, and user errors."""
from __future__ import annotations

import json

import pytest

from rankact.agent.trajectory import Trajectory
from rankact.cli.main import main


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps([
        'Thought: multiply\nAction: calculator\nAction Input: {"expression": "17 * 23"}',
        "Thought: done\nFinal Answer: 391",
    ]))
    return path


def test_ask_shows_steps_live(script, capsys):
    main(["ask", "What is 17 * 23?", "--model", f"scripted:{script}"])
    out = capsys.readouterr().out
    assert out.index("Thought: multiply") < out.index("Observation: 391") < out.index("Final Answer: 391")
    assert "status finished" in out


def test_ask_json_prints_a_valid_trajectory(script, capsys):
    main(["ask", "What is 17 * 23?", "--model", f"scripted:{script}", "--json", "--seed", "4"])
    traj = Trajectory.from_json(capsys.readouterr().out)
    assert traj.final_answer == "391" and traj.status == "finished"
    assert traj.steps[0].observation == "391" and traj.sampling["seed"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "scripted:/no/such/file.json"], "not found"),
        (["--index", "/no/such/index"], "index folder not found"),
    ],
)
def test_ask_user_errors_are_one_line(script, capsys, args, message):
    argv = ["ask", "q", "--model", f"scripted:{script}", *args]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_ask_with_index_adds_search(tmp_path, capsys):
    from rankact.retrieval import HashingEmbedder, Retriever

    retriever = Retriever(HashingEmbedder())
    retriever.add([{"id": "paris", "text": "Paris is the capital of France.", "title": "Paris"}])
    retriever.save(tmp_path / "idx")
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["Action: search\nAction Input: capital of France", "Final Answer: Paris [1]"]))
    main(["ask", "Capital of France?", "--model", f"scripted:{script}", "--index", str(tmp_path / "idx"), "--json"])
    traj = Trajectory.from_json(capsys.readouterr().out)
    assert [t.name for t in traj.tools] == ["calculator", "search"]
    assert "Paris is the capital" in traj.steps[0].observation
    assert traj.citations and traj.citations[0].title == "Paris"
