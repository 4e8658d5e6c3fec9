"""Trajectory -> (ids, trainable mask, roles): token ids are reused, never re-tokenized
across segments; prompt/observation/forced tokens are masked; truncation keeps the answer."""
from __future__ import annotations

from rankact.agent.trajectory import ModelRef, Segment, Trajectory
from rankact.alignment.training.tokenize import ROLE_IDS, collate, encode_prompt_completion, encode_trajectory


class CharTokenizer:
    """One id per character: makes it visible which segments were tokenized here."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def _traj(segments):
    return Trajectory(question="q", model=ModelRef(backend="t", name="t"), prompt_version="v", segments=segments)


def test_encode_uses_recorded_ids_and_masks_context():
    traj = _traj(
        [
            Segment(role="prompt", text="PROMPT", token_ids=[1, 2, 3]),
            Segment(role="generated", text="Thought:", token_ids=[10], forced=True),
            Segment(role="generated", text="go", token_ids=[11, 12]),
            Segment(role="observation", text="ob"),  # no ids: tokenized alone
            Segment(role="generated", text="done", token_ids=[13]),
        ]
    )
    enc = encode_trajectory(traj, CharTokenizer())
    assert enc.input_ids == [1, 2, 3, 10, 11, 12, ord("o"), ord("b"), 13]
    assert enc.trainable == [False, False, False, False, True, True, False, False, True]
    assert enc.roles[6:8] == [ROLE_IDS["observation"]] * 2
    assert enc.n_trainable == 3


def test_left_truncation_drops_prompt_first_then_tail():
    traj = _traj(
        [
            Segment(role="prompt", text="", token_ids=list(range(100, 110))),
            Segment(role="generated", text="", token_ids=[1, 2, 3]),
            Segment(role="observation", text="", token_ids=[7, 7]),
            Segment(role="generated", text="", token_ids=[4]),
        ]
    )
    enc = encode_trajectory(traj, CharTokenizer(), max_length=8)
    assert enc.truncated and len(enc) == 8
    assert enc.input_ids == [108, 109, 1, 2, 3, 7, 7, 4]
    short = encode_trajectory(traj, CharTokenizer(), max_length=4)
    # Only one prompt token of context is kept, then the answer's start (tail dropped).
    assert short.input_ids == [109, 1, 2, 3]
    assert short.trainable == [False, True, True, True]


def test_collate_pads_and_masks():
    a = encode_prompt_completion([5, 6], [7, 8, 9])
    b = encode_prompt_completion([5], [7])
    batch = collate([a, b], pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 7, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch.trainable_mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert batch.last_trainable_index.tolist() == [4, 1]
    assert batch.roles[1, 2].item() == ROLE_IDS["padding"]


def _long_trajectory(answer_id: int) -> Trajectory:
    """130 tokens: a 40-token prompt, then generated / observation / generated pieces."""
    return _traj([
        Segment(role="prompt", text="", token_ids=list(range(1000, 1040))),
        Segment(role="generated", text="", token_ids=list(range(2000, 2030))),
        Segment(role="observation", text="", token_ids=list(range(3000, 3030))),
        Segment(role="generated", text="", token_ids=list(range(4000, 4029)) + [answer_id]),
    ])


def test_a_reward_model_scores_a_long_trajectory_on_the_ids_it_trained_on(tiny_model_dir, tmp_path, monkeypatch):
    """Training and PPO-time scoring go through one tokenization: for a trajectory longer than
    max_length, the ids the reward model trains on are exactly the ids it later scores."""
    from rankact.alignment.feedback.preferences.pairs import PreferencePair
    from rankact.alignment.training.reward.config import RewardTrainConfig
    from rankact.alignment.training.reward.model import RewardModel
    from rankact.alignment.training.reward.train import train_reward

    long_good, long_bad = _long_trajectory(5000), _long_trajectory(5001)
    seen: list[list[int]] = []
    forward = RewardModel.forward

    def spy(self, input_ids, attention_mask):
        seen.extend(row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask, strict=True))
        return forward(self, input_ids, attention_mask)

    monkeypatch.setattr(RewardModel, "forward", spy)
    pair = PreferencePair(question_id="q", question="q", chosen=long_good, rejected=long_bad)
    config = RewardTrainConfig(base=str(tiny_model_dir), out_dir=tmp_path / "rm", max_length=64, batch_size=1,
                               max_steps=1, norm_samples=2, show_progress=False)
    model, _ = train_reward(config, [pair], log=lambda *_: None)
    trained = [row for row in seen]
    seen.clear()
    model.score_trajectory(long_good)
    (scored,) = seen
    assert len(scored) == 64 and scored in trained
    assert scored[-1] != 5000  # over max_length, the end is cut (the one policy): not the last 64 tokens


def test_the_kl_probe_watches_sampled_runs_not_demonstrations():
    from rankact.alignment.training.monitors import DriftProbe

    segments = [Segment(role="prompt", text="P", token_ids=[1]), Segment(role="generated", text="g", token_ids=[2])]
    sampled = encode_trajectory(_traj(segments), CharTokenizer())
    demo = _traj(segments)
    demo.metadata = {"source": "demonstration"}
    written = encode_trajectory(demo, CharTokenizer())
    assert written.meta["demonstration"] and "demonstration" not in sampled.meta
    assert DriftProbe([written, sampled, written], 0, "cpu", None, 1).samples == [sampled]
    only_written = DriftProbe([written], 0, "cpu", None, 1)
    only_written.reference = []
    assert only_written.samples == [] and not only_written.due(1, last=True)  # no false KL alarm


def test_without_steps_makes_only_the_flagged_steps_tokens_context():
    from rankact.alignment.training.tokenize import Encoded, without_steps

    sample = Encoded([1, 2, 3, 4, 5], [False, True, True, True, False], [0, 1, 1, 1, 1],
                     [0, 0, 1, 2, 2])
    kept = without_steps(sample, {1})
    assert kept.trainable == [False, True, False, True, False]
    assert kept.input_ids == sample.input_ids and sample.trainable == [False, True, True, True, False]
