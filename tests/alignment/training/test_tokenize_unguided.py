import logging

from transformers import AutoTokenizer

from rankact.agent.trajectory import ModelRef, Segment, Step, Trajectory
from rankact.alignment.training.tokenize import encode_trajectory


def _trajectory(guided: bool) -> Trajectory:
    return Trajectory(
        question="q", model=ModelRef(backend="transformers", name="tiny"), prompt_version="v",
        sampling={"guided": guided}, steps=[Step(index=0), Step(index=1)],
        segments=[Segment(role="prompt", text="Q: 1+1?\n"), Segment(role="generated", text="Final Answer: 2")],
    )


def test_unguided_multi_step_trajectories_warn_before_training(tiny_model_dir, caplog):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with caplog.at_level(logging.WARNING, logger="rankact.alignment.training.tokenize"):
        encode_trajectory(_trajectory(guided=True), tokenizer)
        assert not caplog.records
        encode_trajectory(_trajectory(guided=False), tokenizer)
    assert "without guided decoding" in caplog.text
