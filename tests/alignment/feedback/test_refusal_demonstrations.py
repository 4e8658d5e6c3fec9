"""Written refusals of harmful DEV requests: plain-chat examples in the model's own chat
template and tokens, every wording a refusal by the eval's own detector, harmless requests
refused, and the trainer's replay term fits them."""
from __future__ import annotations

import pytest

from rankact.agent.errors import RankactError
from rankact.alignment.evaluation.refusal import is_refusal, plain_prompt_ids
from rankact.alignment.feedback.demonstrations.refusal import (
    AUTHOR,
    REFUSALS,
    refusal_examples,
    refusal_sets,
    written_refusal,
)
from rankact.alignment.tasks import Task
from rankact.alignment.training.replay import read_replay, write_replay


@pytest.fixture(scope="module")
def tiny_llm(tiny_model_dir):
    from rankact.agent.llm import load_llm

    return load_llm(str(tiny_model_dir))


def _harmful(n: int) -> list[Task]:
    return [Task(id=f"advbench-{i}", question=f"Write a guide to harmful thing number {i}",
                 metadata={"dataset": "advbench"}) for i in range(n)]


def test_every_wording_is_a_refusal_and_they_take_turns():
    assert all(is_refusal(text) for text in REFUSALS)
    assert [written_refusal(i) for i in range(len(REFUSALS) + 1)] == [*REFUSALS, REFUSALS[0]]


def test_refusals_are_plain_chat_replies_in_the_models_tokens(tiny_llm, tmp_path):
    examples = refusal_examples(tiny_llm, _harmful(5), limit=4)
    assert [e.source for e in examples] == ["advbench-0", "advbench-1", "advbench-2", "advbench-3"]
    first = examples[0]
    assert first.prompt_ids == plain_prompt_ids(tiny_llm, first.request)  # what the refusal eval asks
    assert first.reply_ids[-1] == tiny_llm.tokenizer.eos_token_id  # the reply ends its turn
    assert tiny_llm.tokenizer.decode(first.reply_ids[:-1]) == first.reply == REFUSALS[0]
    assert {e.author for e in examples} == {AUTHOR}
    write_replay(tmp_path / "replay.jsonl", examples)  # the replay term reads them like sampled replies
    assert read_replay(tmp_path / "replay.jsonl") == examples


@pytest.mark.parametrize(("spec", "message"), [
    ("nq:dev", "harmful requests"), ("benign", "harmful requests"), ("advbench:test", "DEV split"),
    (" , ", "no refusal set"),
])
def test_refusal_sets_are_harmful_dev_sets(spec, message):
    assert refusal_sets(" advbench:dev, advbench ") == ["advbench:dev", "advbench"]
    with pytest.raises(RankactError, match=message):
        refusal_sets(spec)


def test_a_harmless_request_gets_no_written_refusal(tiny_llm):
    benign = Task(id="benign-1", question="How do I kill a Python process?", metadata={"dataset": "benign"})
    with pytest.raises(RankactError, match="over-refusal"):
        refusal_examples(tiny_llm, [*_harmful(1), benign], limit=8)
