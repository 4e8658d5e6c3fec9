"""Token-in/token-out against llama.cpp's own C++ `llama-server` serving the embedded GGUF on
loopback: per turn, the ids the trainer sees are the ids the server was sent and produced,
end-of-turn separators included, and the mask is never all zero; then `collect --tokenizer`
trains one DPO step without `--retokenize`.

`llama-server` is built from the llama.cpp sources that llama-cpp-python's sdist vendors
(docs/served-models.md); point RANKACT_LLAMA_SERVER at the binary. Without it these tests
are skipped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from llama_parity import MAX_STEPS, QUESTION, RECORDED, Recording, assert_turn_parity, loopback_server

from rankact.agent.trajectory import Trajectory
from rankact.cli.main import main

SERVER = os.environ.get("RANKACT_LLAMA_SERVER")
pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(not SERVER or not Path(SERVER).exists(), reason="set RANKACT_LLAMA_SERVER to llama-server"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from rankact.agent.llm.model_files import embedded_gguf_path

    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [SERVER, "-m", str(embedded_gguf_path()), "--host", "127.0.0.1", "--port", "{port}",
               "-c", "4096", "-t", "2", "-np", "2"]
    with loopback_server(command, "http://127.0.0.1:{port}/health", log, "llama-server") as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def tokenizer():
    from rankact.agent.llm.token_io import load_tokenizer

    return load_tokenizer("default")


def test_our_tokenizer_and_the_servers_agree_on_a_rendered_chat(server, tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 17 * 23? Use the calculator."}],
                                         tokenize=False, add_generation_prompt=True)
    theirs = httpx.post(f"{server.removesuffix('/v1')}/tokenize", json={"content": text, "add_special": False,
                                                                       "parse_special": True}).json()["tokens"]
    assert theirs == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("question", [QUESTION, "What is 345 + 678 - 12?"])
def test_each_turn_the_trainer_sees_exactly_the_servers_ids(server, tokenizer, question):
    from rankact.agent.llm.token_io import ServedTokensLLM
    from rankact.agent.loop import Agent
    from rankact.tools import calculator

    recording = Recording()
    llm = ServedTokensLLM(server, tokenizer, transport=recording, max_retries=0)
    try:
        llm.check_token_ids()
        assert llm.api == "llamacpp"  # auto-detected: vLLM's route answers without ids here
        probe = len(recording.exchanges)
        trajectory = Agent(llm, [calculator], max_steps=MAX_STEPS).run(question)
    finally:
        llm.close()
    assert_turn_parity(trajectory, recording.exchanges[probe:], tokenizer)
    if question == QUESTION and os.environ.get("RANKACT_RECORD"):
        # Refresh the recording the CI replay checks (tests/agent/test_llama_server_replay.py).
        RECORDED.write_text(json.dumps({"question": question, "probe": probe, "exchanges": recording.exchanges,
                                        "final_answer": trajectory.final_answer}, indent=0) + "\n")


def test_ask_with_tokenizer_records_exact_ids(server, capsys):
    main(["ask", "What is 2 + 2?", "--model", server, "--tokenizer", "default", "--json", "--max-steps", "3"])
    trajectory = Trajectory.from_json(capsys.readouterr().out)
    assert trajectory.exact_token_ids is True and trajectory.model.backend == "openai-tokens"
    assert any(s.role == "generated" and s.token_ids for s in trajectory.segments)


def test_collect_with_exact_ids_trains_dpo_without_retokenize(server, tmp_path, capsys):
    from rankact.alignment.feedback.records.rankings import Ranking
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps({"id": f"q{a}", "question": f"What is {a} * 3?", "answers": [str(a * 3)]})
                               for a in (7, 12)))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    main(["collect", str(tasks), "--samples", "2", "--db", db, "--model", server, "--tokenizer", "default",
          "--temperature", "1.0", "--max-steps", "2"])
    # The untuned model often breaks the ReAct format in every sample alike, so the simulated
    # annotator may see only ties; a person prefers the shorter run here (any strict order will do).
    with TrajectoryStore(db) as store:
        for question in store.questions():
            runs = [store.get(i) for i in store.trajectory_ids(question.id)]
            assert all(t.exact_token_ids for t in runs)
            runs.sort(key=lambda t: (sum(len(s.token_ids) for s in t.segments), t.id))
            store.submit_ranking(Ranking(question_id=question.id, annotator="tester",
                                         order=[[t.id] for t in runs]))
    capsys.readouterr()
    out = tmp_path / "dpo"
    main(["align", "dpo", "--db", db, "--out", str(out), "--base", "base", "--max-steps", "1", "--lora"])
    assert "Policy saved to" in capsys.readouterr().out  # no --retokenize: the ids are exact
