"""Replay: the starting policy's own plain replies, kept by an extra NLL term while training.
Sources are DEV sets only, a harmful request's reply is kept only when it refuses, the file
keeps exact ids, and the term holds the replayed reply where training alone moves it away."""
from __future__ import annotations

import json

import pytest
import torch
from trajectory_factory import two_step_trajectory

from rankact.agent.errors import RankactError
from rankact.agent.llm import Completion
from rankact.alignment.feedback.demonstrations.replay_examples import ReplayExample, replay_sources
from rankact.alignment.tasks import Task
from rankact.alignment.training.replay import (
    ReplayFileError,
    ReplayTerm,
    generate_replay,
    read_replay,
    worth_keeping,
    write_replay,
)
from rankact.alignment.training.sft import SFTConfig, train_sft

EOS = 2


class ScriptedChat:
    """A local-model stand-in: replies by request text, counts what it was asked."""

    def __init__(self, replies: dict[str, str]):
        self.replies, self.asked, self.known, self.configs = replies, [], list(replies), []
        self.eos_ids = {EOS}
        self.tokenizer = type("Tok", (), {"eos_token_id": EOS})()

    def render_prompt(self, messages):
        return messages[-1].content

    def encode(self, text):
        return [1000 + self.known.index(text), 7]

    def continue_batch(self, prompts, configs):
        self.configs += configs
        out = []
        for prompt in prompts:
            request = self.known[prompt[0] - 1000]
            self.asked.append(request)
            reply = self.replies[request]
            out.append(Completion(text=reply, token_ids=[ord(c) for c in reply], finish_reason="stop"))
        return out


def _task(question: str, dataset: str) -> Task:
    return Task(id=f"{dataset}-{len(question)}", question=question, metadata={"dataset": dataset})


def test_only_dev_presets_can_be_replayed():
    with pytest.raises(RankactError, match="only DEV splits"):
        replay_sources("advbench:test")
    with pytest.raises(RankactError, match="unknown replay source"):
        replay_sources("wikipedia:dev")
    with pytest.raises(RankactError, match="no replay source"):
        replay_sources(" , ")


def test_replay_sources_read_the_dev_sets(shared_data):
    advbench, nq = replay_sources("advbench:dev, nq", shared_data)
    assert len(advbench) == 260 and advbench[0].metadata["dataset"] == "advbench"
    assert len(nq) == 2000 and nq[0].metadata["dataset"] == "nq"


def test_a_harmful_request_keeps_only_a_refusal():
    harmful, plain = _task("How do I build a bomb?", "advbench"), _task("Who wrote Hamlet?", "nq")
    assert not worth_keeping(harmful, "Sure, here is how: first get")
    assert worth_keeping(harmful, "I'm sorry, but I can't help with that.")
    assert worth_keeping(plain, "Shakespeare wrote it.")


def test_generate_replay_keeps_exact_ids_the_end_of_turn_and_reads_on_for_refusals():
    harmful = [_task(f"harm {i}" + "x" * i, "advbench") for i in range(6)]
    plain = [_task(f"plain {i}" + "y" * i, "nq") for i in range(6)]
    replies = {t.question: "Sure, do this." for t in harmful} | {t.question: f"Answer {i}." for i, t in enumerate(plain)}
    replies[harmful[4].question] = "I'm sorry, I cannot help with that."
    llm = ScriptedChat(replies)
    read = []
    examples = generate_replay(llm, [harmful, plain], per_source=2, batch_size=2, on_read=read.append)
    # One refusal among the harmful set (it was read to the end); two plain replies, then it stopped.
    assert [e.source for e in examples] == [harmful[4].id, plain[0].id, plain[1].id]
    assert len([q for q in llm.asked if q.startswith("plain")]) == 2
    assert len([q for q in llm.asked if q.startswith("harm")]) == 6
    assert read == [2, 2, 2, 2]  # progress per answered chunk: 6 harmful, then 2 plain
    shown = []
    assert generate_replay(ScriptedChat(replies), [harmful, plain], per_source=2, batch_size=2, progress=True,
                           on_read=shown.append) == examples  # the bar changes nothing
    assert shown == read
    # Sampled (temperature 1 holds the distribution), one seed per request: a rerun writes the same file.
    assert {c.temperature for c in llm.configs} == {1.0}
    assert [c.seed for c in llm.configs[:6]] == list(range(6)) and [c.seed for c in llm.configs[6:]] == [0, 1]
    first = examples[0]
    assert first.reply_ids == [ord(c) for c in first.reply] + [EOS]  # ended its turn: the end is replayed
    assert first.prompt_ids == llm.encode(harmful[4].question)


def test_generate_replay_needs_a_local_model():
    with pytest.raises(RankactError, match="local model"):
        generate_replay(object(), [[_task("q", "nq")]])


def test_replay_file_round_trip_and_clear_errors(tmp_path):
    example = ReplayExample(source="nq-1", request="q", reply="a", prompt_ids=[1, 2], reply_ids=[3, EOS])
    path = tmp_path / "replay.jsonl"
    write_replay(path, [example, example])
    assert read_replay(path) == [example, example]
    with pytest.raises(ReplayFileError, match="not found"):
        read_replay(tmp_path / "missing.jsonl")
    path.write_text(example.model_dump_json() + "\n{\"source\": 1}\n")
    with pytest.raises(ReplayFileError, match=r"replay.jsonl:2: not a replay example"):
        read_replay(path)
    path.write_text("\n")
    with pytest.raises(ReplayFileError, match="no replay examples"):
        read_replay(path)


def test_replay_term_is_off_without_a_file_or_weight(tmp_path):
    assert ReplayTerm.load(SFTConfig(out_dir=tmp_path), 64, 0) is None
    path = tmp_path / "r.jsonl"
    write_replay(path, [ReplayExample(source="nq-1", request="q", reply="a", prompt_ids=[1], reply_ids=[3])])
    assert ReplayTerm.load(SFTConfig(out_dir=tmp_path, replay=path, replay_coef=0), 64, 0) is None
    assert len(ReplayTerm.load(SFTConfig(out_dir=tmp_path, replay=path), 64, 0).samples) == 1


def test_replay_holds_the_replayed_reply_while_sft_moves_the_model(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    best = [two_step_trajectory([2000, 2001], [300, 301]), two_step_trajectory([2002, 2003], [300, 302])]
    prompt, reply = [1, 504, 3062, 28, 1000], [4000, 4001, 4002, EOS]
    replay = tmp_path / "replay.jsonl"
    write_replay(replay, [ReplayExample(source="nq-0", request="q", reply="r", prompt_ids=prompt, reply_ids=reply)])

    def reply_logp(folder) -> float:
        model = AutoModelForCausalLM.from_pretrained(folder)
        ids = torch.tensor([prompt + reply])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
        return sum(logp[len(prompt) - 1 + i, token].item() for i, token in enumerate(reply))

    common = {"base": str(tiny_model_dir), "learning_rate": 3e-3, "batch_size": 2, "epochs": 3, "seed": 0,
              "show_progress": False}
    train_sft(SFTConfig(out_dir=tmp_path / "plain", **common), trajectories=best)
    train_sft(SFTConfig(out_dir=tmp_path / "replayed", replay=replay, **common), trajectories=best)
    start, plain, replayed = (reply_logp(f) for f in (tiny_model_dir, tmp_path / "plain", tmp_path / "replayed"))
    assert replayed > plain + 1.0 and replayed > start  # held (here: even learned) where SFT alone moved away
    records = [json.loads(line) for line in (tmp_path / "replayed" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["replay_loss"] > 0 for r in records if "loss" in r)
    plain_records = (tmp_path / "plain" / "metrics.jsonl").read_text()
    assert "replay_loss" not in plain_records
