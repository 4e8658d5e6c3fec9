"""`rankact align ppo` end to end on the tiny model: tasks file, a reward model folder (its
normalized score is the reward, its backbone starts the critic), the default agent with the
calculator tool, one iteration, a policy folder `load_llm` reads."""
from __future__ import annotations

import json

from rankact.cli.main import main


def test_cli_ppo_with_reward_model_critic(tmp_path, tiny_model_dir, capsys):
    from rankact.agent.llm.loading import load_llm
    from rankact.alignment.training.reward.model import RewardModel

    reward_dir = tmp_path / "rm"
    reward_model = RewardModel.from_base(tiny_model_dir, max_length=128)
    reward_model.set_normalization([0.0, 1.0, 2.0])
    reward_model.save(reward_dir)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"question": "What is 6 * 7?", "answers": ["42"]}) + "\n")
    out = tmp_path / "ppo"
    try:
        main(["align", "ppo", "--tasks", str(tasks), "--reward", str(reward_dir), "--out", str(out),
              "--base", str(tiny_model_dir), "--iterations", "1", "--samples", "2", "--tasks-per-iteration", "1",
              "--max-new-tokens", "4", "--agent-max-steps", "1", "--max-length", "128", "--critic", "reward",
              "--minibatch-size", "2", "--ppo-epochs", "1", "--no-guided", "--probe", str(tasks)])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    assert "Policy saved to" in capsys.readouterr().out
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["rollouts"] == 2 and record["success"] == 0.0  # a random model does not answer 42
    assert record["probe_success"] == 0.0  # greedy run on the probe tasks
    assert abs(record["mean_score"]) < 50  # a normalized reward-model score, finite
    assert load_llm(str(out)) is not None
