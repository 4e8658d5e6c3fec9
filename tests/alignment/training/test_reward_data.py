"""Pure parts of the reward model: the loss, the Wilson interval, pair files, truncation, grouping."""
from __future__ import annotations

import gzip
import json
import math

import pytest
import torch

from rankact.agent.errors import RankactError
from rankact.agent.trajectory import ModelRef, Segment, Trajectory
from rankact.alignment.feedback.preferences.pairs import (
    PreferencePair,
    TextPair,
    pairs_from_ranking,
    read_pairs,
    split_hh,
)
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.training.losses import bradley_terry_loss, pairwise_accuracy
from rankact.alignment.training.reward.batching import (
    TokenizedPair,
    collate_pairs,
    group_pairs,
    make_batches,
    tokenize_pairs,
)
from rankact.alignment.training.reward.evaluate import summarize, wilson_interval
from rankact.alignment.training.tokenize import encode_prompt_completion, truncation_stats


def _nll(x: float) -> float:  # -log σ(x), by hand
    return math.log(1 + math.exp(-x))


def test_bradley_terry_loss_matches_hand_computed_values():
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.5, 1.0])
    # diffs 1, -0.5, -2
    expected = (_nll(1.0) + _nll(-0.5) + _nll(-2.0)) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    # margin 0.5: diffs 0.5, -1, -2.5
    with_margin = (_nll(0.5) + _nll(-1.0) + _nll(-2.5)) / 3
    assert bradley_terry_loss(chosen, rejected, margin=0.5).item() == pytest.approx(with_margin, rel=1e-6)
    # centering: coef * mean((r_c + r_r)^2) = 0.1 * (9 + 0.25 + 0) / 3
    centred = expected + 0.1 * (9 + 0.25 + 0) / 3
    assert bradley_terry_loss(chosen, rejected, center_coef=0.1).item() == pytest.approx(centred, rel=1e-6)
    # weights: a group of two pairs (weight 1/2 each) and one single pair count equally
    weights = torch.tensor([0.5, 0.5, 1.0])
    weighted = (0.5 * _nll(1.0) + 0.5 * _nll(-0.5) + _nll(-2.0)) / 2
    assert bradley_terry_loss(chosen, rejected, weights=weights).item() == pytest.approx(weighted, rel=1e-6)
    assert pairwise_accuracy(chosen, rejected) == pytest.approx(1 / 3)
    assert pairwise_accuracy(torch.tensor([1.0]), torch.tensor([1.0])) == 0.0  # a tie is not a win


def test_loss_gradient_pushes_chosen_up_and_rejected_down():
    chosen = torch.tensor([0.3], requires_grad=True)
    rejected = torch.tensor([0.1], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    sig = 1 / (1 + math.exp(-0.2))
    assert chosen.grad.item() == pytest.approx(-(1 - sig), rel=1e-6)
    assert rejected.grad.item() == pytest.approx(1 - sig, rel=1e-6)


def test_wilson_interval_and_summary():
    low, high = wilson_interval(60, 100)
    # Hand-computed for p=0.6, n=100, z=1.96: 0.5020 - 0.6906
    assert low == pytest.approx(0.5020, abs=1e-3) and high == pytest.approx(0.6906, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    s = summarize([1.0, 2.0, 0.0], [0.0, 3.0, -1.0])
    assert (s.pairs, s.correct) == (3, 2) and s.accuracy == pytest.approx(2 / 3)
    assert s.mean_margin == pytest.approx((1 - 1 + 1) / 3)


def test_hh_split_takes_the_shared_prefix_up_to_the_last_assistant_turn():
    prompt = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how do I steal?\n\nAssistant:"
    pair = split_hh(prompt + " I can't help with that.", prompt + " I could help.")
    assert pair.prompt == prompt
    assert pair.chosen == " I can't help with that." and pair.rejected == " I could help."
    # No shared assistant turn: the whole dialogues are the responses.
    bare = split_hh("\n\nHuman: a", "\n\nHuman: b")
    assert bare.prompt == "" and bare.chosen == "\n\nHuman: a"


def _trajectory(question: str, answer: str, ids: bool = True) -> Trajectory:
    return Trajectory(
        question=question, model=ModelRef(backend="local", name="tiny"), prompt_version="v1", status="finished",
        final_answer=answer,
        segments=[
            Segment(role="prompt", text=f"Q: {question}\n", token_ids=[10, 11, 12] if ids else None),
            Segment(role="generated", text=f"Final Answer: {answer}", token_ids=[20, len(answer)] if ids else None),
        ],
    )


def test_read_pairs_formats_ranges_and_errors(tmp_path):
    hh = tmp_path / "hh.jsonl.gz"
    rows = [{"chosen": f"\n\nHuman: q{i}\n\nAssistant: good {i}", "rejected": f"\n\nHuman: q{i}\n\nAssistant: bad"}
            for i in range(5)]
    with gzip.open(hh, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs = read_pairs(hh, "1:3")
    assert [p.chosen for p in pairs] == [" good 1", " good 2"]
    assert len({p.group for p in pairs}) == 2  # HH: each pair its own group

    trl = tmp_path / "trl.jsonl"
    trl.write_text("\n".join(json.dumps({"prompt": "P", "chosen": c, "rejected": "r"}) for c in "ab") + "\n")
    assert {p.group for p in read_pairs(trl)} == {"P"}

    exported = tmp_path / "pairs.jsonl"
    pair = PreferencePair(question_id="q1", question="2+2?", chosen=_trajectory("2+2?", "4"),
                          rejected=_trajectory("2+2?", "5"))
    exported.write_text(pair.model_dump_json() + "\n")
    (loaded,) = read_pairs(exported)
    assert isinstance(loaded, PreferencePair) and loaded.chosen.final_answer == "4"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(RankactError, match=r"bad.jsonl:2: not valid JSON"):
        read_pairs(bad)
    bad.write_text(json.dumps({"chosen": 1}) + "\n")
    with pytest.raises(RankactError, match=r"bad.jsonl:1"):
        read_pairs(bad)
    with pytest.raises(RankactError, match="not found"):
        read_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(RankactError, match="A:B"):
        read_pairs(hh, "3")


def test_truncation_cuts_the_prompt_from_the_left_then_the_end():
    fits = encode_prompt_completion([1, 2], [3], 5)
    prompt_cut = encode_prompt_completion([1, 2, 3, 4, 5, 6], [7, 8, 9], 5)
    too_long = encode_prompt_completion([1, 2], [3, 4, 5, 6, 7, 8], 5)
    assert fits.input_ids == [1, 2, 3]
    assert prompt_cut.input_ids == [5, 6, 7, 8, 9]  # response whole, prompt tail
    # Response alone too long: one prompt token kept as context, then the response's start.
    assert too_long.input_ids == [2, 3, 4, 5, 6] and too_long.trainable == [False, True, True, True, True]
    stats = truncation_stats([fits, prompt_cut, too_long])
    assert (stats.sequences, stats.prompt_truncated, stats.response_truncated) == (3, 2, 1)


def test_tokenize_pairs_keeps_each_response_whole(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    long_prompt = "\n\nHuman: " + "blah " * 200 + "\n\nAssistant:"
    pairs = [TextPair(prompt=long_prompt, chosen=" Sure, here it is.", rejected=" No.", group="g")]
    (tok,), stats = tokenize_pairs(pairs, tokenizer, max_length=32)
    chosen_ids = tokenizer(" Sure, here it is.", add_special_tokens=False)["input_ids"]
    assert len(tok.chosen) == 32 and tok.chosen[-len(chosen_ids):] == chosen_ids
    assert tok.rejected[-1:] == tokenizer(" No.", add_special_tokens=False)["input_ids"][-1:]
    assert stats.prompt_truncated == 2 and stats.response_truncated == 0


def test_trajectory_pairs_use_recorded_token_ids_split_at_the_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pair = PreferencePair(question_id="q", question="x", chosen=_trajectory("x", "4"), rejected=_trajectory("x", "55"))
    (tok,), _ = tokenize_pairs([pair], tokenizer, max_length=4)
    assert tok.chosen == [11, 12, 20, 1] and tok.rejected == [11, 12, 20, 2]  # prompt cut left, ids as recorded
    assert tok.group == "q"


def test_k_way_ranking_with_ties_gives_grouped_pairs_kept_in_one_batch():
    # Question A: a > {b, c} > d  -> 2 + 2 + 1 = 5 pairs (b, c tied: none between them).
    ranking = Ranking(question_id="A", annotator="ann", order=[["a"], ["b", "c"], ["d"]])
    trajectories = {t: _trajectory("qa", t) for t in "abcd"}
    pairs_a = pairs_from_ranking(ranking, trajectories, "qa")
    assert {(p.chosen.final_answer, p.rejected.final_answer) for p in pairs_a} == {
        ("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")}
    # Three other questions with one pair each.
    tokenized = [TokenizedPair(p.question_id, [1, ord(p.chosen.final_answer)], [1, ord(p.rejected.final_answer)])
                 for p in pairs_a]
    tokenized += [TokenizedPair(f"Q{i}", [2, i], [3, i]) for i in range(3)]
    groups = group_pairs(tokenized)
    assert sorted(len(g) for g in groups) == [1, 1, 1, 5]
    for seed in range(5):
        batches = make_batches(groups, batch_size=2, seed=seed, epoch=0)
        assert sorted(i for b in batches for i in b) == list(range(8))  # every pair exactly once
        holding = [b for b in batches if 0 in b]
        assert len(holding) == 1 and set(range(5)) <= set(holding[0])  # question A never split
    assert make_batches(groups, 2, 0, 0) == make_batches(groups, 2, 0, 0)  # seeded
    assert {tuple(map(tuple, make_batches(groups, 2, s, 0))) for s in range(6)}.__len__() > 1  # shuffled
    # In the batch, each response is forwarded once; the group's pairs weigh 1/5 each.
    batch = collate_pairs(tokenized, list(range(5)))
    assert len(batch.sequences) == 4 and batch.weights == [0.2] * 5
    assert batch.sequences[batch.chosen_rows[0]] == [1, ord("a")]
