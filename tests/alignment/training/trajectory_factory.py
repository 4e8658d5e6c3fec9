"""Small hand-built trajectories for the trainer tests: recorded token ids, one observation."""
from __future__ import annotations

from rankact.agent.trajectory import ModelRef, Segment, Trajectory


def two_step_trajectory(answer_ids: list[int], obs_ids: list[int]) -> Trajectory:
    """prompt | generated [1000, 1001] | observation `obs_ids` | generated `answer_ids`."""
    return Trajectory(
        question="q",
        model=ModelRef(backend="t", name="t"),
        prompt_version="v",
        segments=[
            Segment(role="prompt", text="p", token_ids=[1, 504, 3062, 28]),
            Segment(role="generated", text="a", token_ids=[1000, 1001]),
            Segment(role="observation", text="o", token_ids=obs_ids),
            Segment(role="generated", text="b", token_ids=answer_ids),
        ],
    )
