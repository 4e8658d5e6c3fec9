"""Trajectory -> (ids, trainable mask, roles): token ids are reused, never re-tokenized
across segments; prompt/observation/forced tokens are masked; truncation keeps the answer."""
from __future__ import annotations

from agent.trajectory import ModelRef, Segment, Trajectory
from alignment.training.tokenize import ROLE_IDS, collate, encode_prompt_completion, encode_trajectory


class CharTokenizer:
    """One id per character: makes it visible which segments were tokenized here."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


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
