"""The real embedded model with guided decoding: every step parses, trajectories validate."""
from __future__ import annotations

import pytest

from rankact.agent.guided import GuidedConfig
from rankact.agent.parser import ParsedAction, ParsedFinal, parse_step
from rankact.agent.trajectory import Trajectory
from rankact.tools.calculator import calculator

QUESTIONS = ["What is 17 * 23?", "What is 345 + 678?", "What is 144 divided by 12?"]


@pytest.mark.slow
def test_guided_embedded_model_takes_valid_steps(embedded_model_dir):
    from rankact.agent.llm.local import TransformersLLM
    from rankact.agent.loop import Agent

    llm = TransformersLLM(embedded_model_dir)
    config = GuidedConfig(thought_max_tokens=24, input_max_tokens=16, answer_max_tokens=16)
    agent = Agent(llm, [calculator], max_steps=3, guided_config=config)
    assert agent.guided
    for question in QUESTIONS:
        traj = agent.run(question)
        assert traj.status != "error", traj.steps
        assert traj.parse_errors == 0
        assert Trajectory.from_json(traj.to_json()) == traj
        all_ids = [i for s in traj.segments for i in s.token_ids]
        assert llm.decode(all_ids) == traj.transcript()
        for step in traj.steps:
            parsed = parse_step(step.raw, ["calculator"])  # the raw step text re-parses
            if step.action is not None:
                assert isinstance(parsed, ParsedAction) and parsed.action == step.action
                if step.error is None:
                    assert calculator.validate(parsed.action_input).model_dump() == step.action_input
            else:
                assert isinstance(parsed, ParsedFinal) and parsed.answer == step.final_answer
        if traj.status == "finished":
            assert traj.final_answer
