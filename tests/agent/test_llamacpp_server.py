"""A real llama.cpp server (`llama-cpp-python[server]`) serving the embedded GGUF on loopback,
driven the way a new user would: `rankact ask --model http://127.0.0.1:PORT/v1` in both
formats, and a short `collect` whose trajectories train one DPO step.

The server builds llama.cpp from source (no binary wheels on our registry), so it lives in its
own venv, never the project's: set RANKACT_LLAMACPP_PYTHON to that venv's python
(docs/served-models.md). Without it these tests are skipped. llama-cpp-python's server answers the
OpenAI routes only: no token ids come back (llama.cpp's own `llama-server` has `/completion`
with `return_tokens`; this Python server does not), so its trajectories carry no exact ids and
DPO trains on them with `--retokenize`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from llama_parity import loopback_server

from rankact.agent.trajectory import Trajectory
from rankact.cli.main import main

PYTHON = os.environ.get("RANKACT_LLAMACPP_PYTHON")
pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(not PYTHON or not Path(PYTHON).exists(),
                       reason="set RANKACT_LLAMACPP_PYTHON to a python with llama-cpp-python[server]"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from rankact.agent.llm.model_files import embedded_gguf_path

    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    # chatml-function-calling: the chat handler that reads `tools` and answers with `tool_calls`;
    # without tools it is plain ChatML, the template SmolLM2 was tuned on.
    command = [PYTHON, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()), "--host", "127.0.0.1",
               "--port", "{port}", "--chat_format", "chatml-function-calling", "--n_ctx", "4096", "--n_threads", "2"]
    with loopback_server(command, "http://127.0.0.1:{port}/v1/models", log, "llama.cpp server") as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("format", ["react", "native"])
def test_ask_runs_on_the_served_model_in_both_formats(server, format, capsys):
    main(["ask", "What is 17 * 23?", "--model", server, "--format", format, "--json", "--max-steps", "3"])
    trajectory = Trajectory.from_json(capsys.readouterr().out)
    assert trajectory.model.backend == "openai" and trajectory.steps
    # The untuned 135M model often ignores the ReAct format unguided: three parse errors end a run
    # with status "error", which is the model's doing (data), never an outage of the server.
    assert trajectory.backend_failure is None
    assert trajectory.status != "error" or all(s.error and s.error.kind == "parse" for s in trajectory.steps)
    generated = [s for s in trajectory.segments if s.role == "generated"]
    assert generated and any(s.text.strip() for s in generated)  # the server really produced text
    assert trajectory.exact_token_ids is False  # chat text: no ids from this server


def test_token_in_token_out_says_this_server_returns_no_ids(server, capsys):
    with pytest.raises(SystemExit) as info:
        main(["ask", "What is 2 + 2?", "--model", server, "--tokenizer", "default"])
    assert info.value.code == 2
    assert "returned no token ids" in capsys.readouterr().err


def test_collect_then_one_dpo_step_with_retokenize(server, tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps({"id": f"q{a}", "question": f"What is {a} * 3?", "answers": [str(a * 3)]})
                               for a in (7, 12)))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    main(["collect", str(tasks), "--samples", "2", "--db", db, "--model", server, "--format", "react",
          "--temperature", "1.0", "--max-steps", "2"])
    main(["feedback", "simulate", "--db", db, "--criteria", "process"])
    capsys.readouterr()
    out = tmp_path / "dpo"
    args = ["align", "dpo", "--db", db, "--out", str(out), "--base", "base", "--max-steps", "1", "--lora"]
    with pytest.raises(SystemExit) as refused:
        main(args)  # served chat text has no exact ids: refused without --retokenize
    assert refused.value.code == 2 and "--retokenize" in capsys.readouterr().err
    main([*args, "--retokenize"])
    assert "Policy saved to" in capsys.readouterr().out
    assert (out / "rankact_policy.json").is_file()
