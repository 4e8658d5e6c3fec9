"""Group-relative training from rankings: ranks -> advantages (hand-computed), ties, a group
that all ties gives zero gradient, observation tokens get none, a flag changes exactly its
step's gradient, and the trainer end to end on a store's rankings."""
from __future__ import annotations

import json
import math

import pytest
import torch
from trajectory_factory import two_step_trajectory

from rankact.alignment.feedback.preferences.groups import RankedGroup, group_from_ranking
from rankact.alignment.feedback.records.rankings import Ranking, StepFlag, rank_scores
from rankact.alignment.training.advantages import group_advantages, token_advantages
from rankact.alignment.training.group_source import load_groups
from rankact.alignment.training.losses import group_relative_loss
from rankact.alignment.training.tokenize import encode_trajectory, segment_steps


def test_rank_scores_spread_places_and_ties_share_them():
    assert rank_scores([["a"], ["b"], ["c"]]) == {"a": 1.0, "b": 0.5, "c": 0.0}
    # a and b tie for places 0 and 1 (mean 0.5 of 3 places -> 1 - 0.5/3); d alone last
    scores = rank_scores([["a", "b"], ["c"], ["d"]])
    assert scores["a"] == scores["b"] == pytest.approx(1 - 0.5 / 3)
    assert scores["c"] == pytest.approx(1 - 2 / 3) and scores["d"] == 0.0
    assert rank_scores([["a", "b", "c"]]) == {"a": 0.5, "b": 0.5, "c": 0.5}


def test_group_advantages_are_centred_and_scaled_by_the_group_spread():
    # scores 1, .5, 0: mean .5, population std sqrt(1/6)
    adv = group_advantages([1.0, 0.5, 0.0])
    s = math.sqrt(1 / 6)
    assert adv == pytest.approx([0.5 / s, 0.0, -0.5 / s])
    assert group_advantages([1.0, 0.5, 0.0], scale=False) == pytest.approx([0.5, 0.0, -0.5])
    assert group_advantages([0.3, 0.3, 0.3]) == [0.0, 0.0, 0.0]  # all tie: no preference
    assert sum(group_advantages([0.9, 0.1, 0.4, 0.4])) == pytest.approx(0.0, abs=1e-12)


def test_token_advantages_skip_context_and_push_flagged_steps_down():
    trainable = [False, True, True, False, True, True]
    steps = [0, 0, 0, 0, 1, 1]
    assert token_advantages(0.8, trainable, steps, set()) == [0.0, 0.8, 0.8, 0.0, 0.8, 0.8]
    # step 1 flagged: even a winning trajectory gets min(0.8, 0) - 1 there
    assert token_advantages(0.8, trainable, steps, {1}, flag_penalty=1.0) == [0.0, 0.8, 0.8, 0.0, -1.0, -1.0]
    assert token_advantages(-0.5, trainable, steps, {0}, flag_penalty=0.25) == [0.0, -0.75, -0.75, 0.0, -0.5, -0.5]


def test_segment_steps_count_observations():
    trajectory = two_step_trajectory([7, 8], [300, 301])
    assert segment_steps(trajectory) == [0, 0, 0, 1]
    encoded = encode_trajectory(trajectory, tokenizer=None)
    # prompt 4 tokens, generated 2 (step 0), observation 2 (step 0), answer 2 (step 1)
    assert encoded.steps == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert encoded.trainable == [False] * 4 + [True, True] + [False, False] + [True, True]


def _loss_grad(advantages: torch.Tensor, mask: torch.Tensor, kl_coef: float = 0.0) -> torch.Tensor:
    """d loss / d logp at the starting policy (logp = old = ref)."""
    ref = torch.log(torch.full(mask.shape, 0.3))
    logp = ref.clone().requires_grad_(True)
    loss, _ = group_relative_loss(logp, ref, ref, advantages, mask, clip_range=0.2, kl_coef=kl_coef)
    loss.backward()
    return logp.grad


def test_a_group_that_all_ties_gives_zero_gradient_and_observations_get_none():
    mask = torch.tensor([[0, 1, 1, 0, 1], [0, 1, 0, 1, 1]], dtype=torch.float32)
    zero = torch.zeros(2, 5)
    assert torch.count_nonzero(_loss_grad(zero, mask)) == 0
    grad = _loss_grad(torch.full((2, 5), 0.7), mask, kl_coef=0.04)
    assert (grad[mask == 0] == 0).all() and (grad[mask == 1] < 0).all()  # ascent on positive advantage


def test_a_flag_changes_exactly_that_steps_gradient():
    trajectory = two_step_trajectory([7, 8, 9], [300, 301])
    encoded = encode_trajectory(trajectory, tokenizer=None)
    mask = torch.tensor([encoded.trainable], dtype=torch.float32)
    plain = torch.tensor([token_advantages(0.6, encoded.trainable, encoded.steps, set())])
    flagged = torch.tensor([token_advantages(0.6, encoded.trainable, encoded.steps, {1})])
    changed = (_loss_grad(plain, mask) != _loss_grad(flagged, mask))[0]
    step1_generated = torch.tensor([t and s == 1 for t, s in zip(encoded.trainable, encoded.steps, strict=True)])
    assert torch.equal(changed, step1_generated)


def test_group_from_ranking_keeps_order_ties_and_flags():
    trajectories = {t.id: t for t in (two_step_trajectory([i], [300]) for i in range(3))}
    a, b, c = trajectories
    ranking = Ranking(question_id="q", annotator="ann", order=[[a], [b, c], ["deleted"]],
                      flags=[StepFlag(trajectory_id=a, step_index=1), StepFlag(trajectory_id="deleted", step_index=0)])
    group = group_from_ranking(ranking, trajectories, "question")
    assert [t.id for t in group.trajectories] == [a, b, c]
    assert group.scores == [1.0, 0.25, 0.25]
    assert group.flagged == {a: [1]}
    assert group_from_ranking(Ranking(question_id="q", annotator="x", order=[[a]]), trajectories, "q") is None


def _store_with_rankings(path, n_questions: int = 2):
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    url = f"sqlite:///{path}"
    with TrajectoryStore(url) as store:
        for q in range(n_questions):
            good = two_step_trajectory([2000 + q, 2100], [300, 301]).model_copy(update={"question": f"q{q}"})
            bad = two_step_trajectory([4000 + q, 4100], [500, 501]).model_copy(update={"question": f"q{q}"})
            qid = store.add(good, gold=["x"])
            store.add(bad, question_id=qid)
            store.submit_ranking(Ranking(question_id=qid, annotator="ann", order=[[good.id], [bad.id]]))
    return url


def test_grpo_raises_the_better_trajectory_and_resumes(tmp_path, tiny_model_dir):
    from rankact.alignment.training import grpo as grpo_module
    from rankact.alignment.training.grpo import GRPOConfig, train_grpo

    url = _store_with_rankings(tmp_path / "store.db")
    groups = load_groups(url)
    assert len(groups) == 2 and all(g.scores == [1.0, 0.0] for g in groups)
    out = tmp_path / "grpo"
    config = GRPOConfig(out_dir=out, db=url, base=str(tiny_model_dir), learning_rate=5e-3, batch_size=4,
                        epochs=8, max_steps=4, seed=0, show_progress=False)
    result = train_grpo(config)
    assert result.steps == 4 and result.notes["samples"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-6) and records[-1]["kl"] > 0
    assert (out / grpo_module.REFERENCE_FILE).is_file() and (out / "metrics.png").is_file()

    # The winners' generated tokens became more likely than under the reference, the losers' less.
    from rankact.alignment.training.logprobs import token_logprobs
    from rankact.alignment.training.policy import load_policy
    from rankact.alignment.training.tokenize import collate

    trained, tokenizer = load_policy(str(out))
    base, _ = load_policy(str(tiny_model_dir))
    for group in groups:
        batch = collate([encode_trajectory(t, tokenizer) for t in group.trajectories], 0)
        with torch.no_grad():
            new = token_logprobs(trained, batch.input_ids, batch.attention_mask, batch.trainable_mask)[0].sum(-1)
            old = token_logprobs(base, batch.input_ids, batch.attention_mask, batch.trainable_mask)[0].sum(-1)
        assert new[0] > old[0] and new[1] < old[1]

    resumed = train_grpo(config.model_copy(update={"resume": True, "max_steps": 5}))
    assert resumed.steps == 5


def test_grpo_says_why_when_there_is_no_signal(tmp_path, tiny_model_dir):
    from rankact.agent.errors import RankactError
    from rankact.alignment.training.grpo import GRPOConfig, train_grpo

    tie = [two_step_trajectory([i], [300]) for i in range(2)]
    groups = [RankedGroup(question_id="q", question="q", trajectories=tie, scores=[0.5, 0.5])]
    with pytest.raises(RankactError, match="no training signal"):
        train_grpo(GRPOConfig(out_dir=tmp_path / "o", base=str(tiny_model_dir), show_progress=False), groups=groups)
    with pytest.raises(RankactError, match="no rankings"):
        from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

        url = f"sqlite:///{tmp_path / 'empty.db'}"
        TrajectoryStore(url).close()
        load_groups(url)


def test_flags_travel_in_pair_exports_and_are_never_imitated():
    from rankact.alignment.feedback.preferences.pairs import pairs_from_ranking
    from rankact.alignment.training.dpo import encode_pairs
    from rankact.alignment.training.sft import encode_best, flagged_steps

    good, bad = two_step_trajectory([7, 8], [300]), two_step_trajectory([9, 10], [301])
    ranking = Ranking(question_id="q", annotator="ann", order=[[good.id], [bad.id]],
                      flags=[StepFlag(trajectory_id=good.id, step_index=0, reason="computed in its head")])
    (pair,) = pairs_from_ranking(ranking, {good.id: good, bad.id: bad}, "q")
    assert pair.chosen_flagged_steps == [0] and pair.rejected_flagged_steps == []
    assert type(pair).model_validate_json(pair.model_dump_json()).chosen_flagged_steps == [0]

    plain = encode_trajectory(good, None)
    (sft_sample,) = encode_best([good], None, 512, flagged_steps([pair]))
    (dpo_chosen, dpo_rejected), = encode_pairs([pair], None, 512)
    step0 = [t and s == 0 for t, s in zip(plain.trainable, plain.steps, strict=True)]
    assert any(step0)
    for sample in (sft_sample, dpo_chosen):  # step 0's tokens become context, step 1's stay trainable
        assert sample.trainable == [t and not f for t, f in zip(plain.trainable, step0, strict=True)]
    assert dpo_rejected.trainable == encode_trajectory(bad, None).trainable
