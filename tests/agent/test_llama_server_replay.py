"""The real `llama-server` run of tests/agent/test_llama_server_tokens.py, replayed: rankact must
send the recorded server exactly the same token ids, turn by turn, and the trajectory built from
its replies must pass the same parity checks. Runs everywhere; refresh the recording with
`RANKACT_RECORD=1 RANKACT_LLAMA_SERVER=... pytest tests/agent/test_llama_server_tokens.py`
after a deliberate change to the prompt or the chat template."""
from __future__ import annotations

import json

from llama_parity import MAX_STEPS, RECORDED, assert_turn_parity, replay

from rankact.agent.llm.token_io import ServedTokensLLM, load_tokenizer
from rankact.agent.loop import Agent
from rankact.tools import calculator


def test_replayed_llama_server_run_keeps_per_turn_parity():
    recorded = json.loads(RECORDED.read_text())
    tokenizer = load_tokenizer("default")
    transport = replay(recorded["exchanges"])
    llm = ServedTokensLLM("http://127.0.0.1:8080/v1", tokenizer, transport=transport, max_retries=0)
    llm.check_token_ids()
    assert llm.api == "llamacpp"
    trajectory = Agent(llm, [calculator], max_steps=MAX_STEPS).run(recorded["question"])
    assert transport.left == []  # every recorded turn was asked for, with the same ids
    assert trajectory.final_answer == recorded["final_answer"]
    assert_turn_parity(trajectory, recorded["exchanges"][recorded["probe"]:], tokenizer)
