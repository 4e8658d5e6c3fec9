"""`rankact generate`: the reply is streamed; every error a user can cause is one line."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from openai_stub_server import API_KEY, StubServer

from rankact.cli.main import main


def run_main(argv, capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(["The capital of France is Paris."]))
    return path


def test_subprocess_streams_a_scripted_reply_and_reports_a_missing_model(script, tmp_path):
    cmd = [sys.executable, "-m", "rankact.cli", "generate"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ok = subprocess.run(cmd + ["Capital?", "--model", f"scripted:{script}"], check=False, capture_output=True,
                        text=True, env=env, timeout=60)
    assert ok.returncode == 0 and ok.stdout == "The capital of France is Paris.\n"
    bad = subprocess.run(cmd + ["hi", "--model", str(tmp_path / "missing")], check=False, capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "model not found" in one_error_line(bad.stderr) and "http(s)://HOST/v1" in bad.stderr


def test_local_model_folder_reply(tiny_model_dir, capsys):
    code, out, _ = run_main(["generate", "hello", "--model", str(tiny_model_dir), "--max-tokens", "4",
                               "--temperature", "0.7", "--seed", "1", "--system", "Be brief."], capsys)
    assert code == 0 and out.endswith("\n") and out.strip()


def test_not_a_model_and_invalid_gguf(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    code, _, err = run_main(["generate", "hi", "--model", str(tmp_path / "folder")], capsys)
    assert code == 2 and "not a model folder" in one_error_line(err)
    (tmp_path / "readme.txt").write_text("hello")
    code, _, err = run_main(["generate", "hi", "--model", str(tmp_path / "readme.txt")], capsys)
    assert code == 2 and "not a model" in one_error_line(err)
    (tmp_path / "broken.gguf").write_bytes(b"\x00" * 4096)
    code, _, err = run_main(["generate", "hi", "--model", str(tmp_path / "broken.gguf")], capsys)
    assert code == 2 and "not a loadable GGUF" in one_error_line(err)


def test_unreachable_server(capsys, monkeypatch):
    monkeypatch.setattr("rankact.agent.llm.openai_http.time.sleep", lambda s: None)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run_main(["generate", "hi", "--model", f"http://127.0.0.1:{port}/v1"], capsys)
    assert code == 2 and "cannot connect" in one_error_line(err)


def test_server_401_404_and_success(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RANKACT_API_KEY", raising=False)
    with StubServer() as url:
        code, _, err = run_main(["generate", "hi", "--model", url, "--api-key", "wrong"], capsys)
        assert code == 2 and "authentication failed" in one_error_line(err)
        code, _, err = run_main(["generate", "hi", "--model", url, "--api-key", API_KEY,
                                 "--server-model", "gpt-nope"], capsys)
        assert code == 2 and "model or endpoint not found" in one_error_line(err)
        code, _, err = run_main(["generate", "hi", "--model", url.removesuffix("/v1"), "--api-key", API_KEY],
                                capsys)
        assert code == 2 and "not found (HTTP 404)" in one_error_line(err)
        code, out, err = run_main(["generate", "hi", "--model", url, "--api-key", API_KEY], capsys)
        assert code == 0 and out.startswith("Paris is the capital of France.")


def test_bad_options_are_usage_errors(capsys, script):
    code, _, err = run_main(["generate", "hi", "--max-tokens", "0"], capsys)
    assert code == 2 and "--max-tokens" in err and "Traceback" not in err
    code, _, err = run_main(["generate", "hi", "--model", f"scripted:{script}", "--top-p", "0"], capsys)
    assert code == 2 and "--top-p" in one_error_line(err)
