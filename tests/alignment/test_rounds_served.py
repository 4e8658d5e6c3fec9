"""Rounds with --served-policy: collection runs on vLLM (token ids in and out), and a round's
policy reaches the server as a LoRA adapter (its difference to the served base, factored by
SVD) that is loaded before any request names it."""
from __future__ import annotations

import json

import torch
from served_stub import MODEL, ServedStub
from transformers import AutoModelForCausalLM, AutoTokenizer

from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.rounds import Rounds, RoundsConfig

LOAD = "/v1/load_lora_adapter"


def _tasks(path, questions):
    path.write_text("\n".join(json.dumps({"id": f"t{i}", "question": q, "answers": ["5"]})
                              for i, q in enumerate(questions)))
    return str(path)


def test_a_rounds_policy_is_pushed_as_an_adapter_before_collection_names_it(tmp_path, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stub = ServedStub([], api="vllm", tokenizer=tokenizer)
    with stub as url:
        config = RoundsConfig(out_dir=tmp_path / "run", base=str(tiny_model_dir), samples=2, agent_max_steps=1,
                              tasks=_tasks(tmp_path / "train.jsonl", ["What is 2 + 3?", "What is 1 + 4?"]),
                              heldout=_tasks(tmp_path / "held.jsonl", ["What is 4 + 1?"]), served_policy=url)
        rounds = Rounds(config, say=lambda _: None)
        assert rounds.llm(config.base).http.model == MODEL  # round 0: the served base itself
        # Round 1 "trained": a policy folder whose first attention projection moved by a rank-1 update.
        tuned = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        weight = tuned.model.layers[0].self_attn.q_proj.weight
        with torch.no_grad():
            weight += 0.05 * torch.outer(torch.ones(weight.shape[0]), torch.linspace(-1, 1, weight.shape[1]))
        policy = rounds.folder(1) / "policy"
        tuned.save_pretrained(policy)
        tokenizer.save_pretrained(policy)
        rounds.mark(1, "train", {"steps": 1})
        rounds.collect(2)  # collects with round 1's policy
    adapter = (rounds.folder(1) / "served-adapter").resolve()
    assert stub.bodies(LOAD) == [{"lora_name": "rankact-round-1", "lora_path": str(adapter)}]
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8  # LoRA rank x round
    names = {body["model"] for body in stub.bodies("/v1/completions")}
    assert names == {"rankact-round-1"}  # every collection request named the pushed adapter
    with TrajectoryStore(rounds.store_url(2)) as store:
        trajectories = store.list()
    assert len(trajectories) == 4 and all(t.exact_token_ids for t in trajectories)
