"""`rankact ask --trace`: spans as JSON lines on stderr, and one-line errors for bad values."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rankact.cli.main import main

pytest.importorskip("opentelemetry.sdk")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(['Action: calculator\nAction Input: {"expression": "17 * 23"}', "Final Answer: 391"]))
    return path


def test_trace_console_prints_the_run_s_spans_on_stderr(script):
    env = {k: v for k, v in os.environ.items() if k != "RANKACT_OTEL" and not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-m", "rankact.cli", "ask", "What is 17 * 23?", "--model",
                           f"scripted:{script}", "--json", "--trace", "console"],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    trajectory = json.loads(done.stdout)
    spans = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {s["name"] for s in spans} == {"invoke_agent rankact", "react_step", "chat script.json",
                                          "execute_tool calculator"}
    assert all(s["attributes"]["rankact.trajectory.id"] == trajectory["id"] for s in spans)
    assert all(s["resource"]["attributes"]["service.name"] == "rankact" for s in spans)
    [run] = [s for s in spans if s["name"] == "invoke_agent rankact"]
    assert run["parent_id"] is None and run["attributes"]["rankact.trajectory.status"] == "finished"


@pytest.mark.parametrize("value, message", [
    ("jaeger", "unknown trace exporter 'jaeger'"),
    pytest.param("otlp", "pip install opentelemetry-exporter-otlp", marks=pytest.mark.skipif(
        importlib.util.find_spec("opentelemetry.exporter") is not None, reason="an OTLP exporter is installed")),
])
def test_bad_trace_values_are_one_line_errors(script, capsys, value, message):
    with pytest.raises(SystemExit) as info:
        main(["ask", "q", "--model", f"scripted:{script}", "--trace", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err and err.count("\n") == 1
