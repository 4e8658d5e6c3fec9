"""`accelerate launch --num_processes 2` on CPU runs one DPO step and one PPO iteration of
the real trainers on the tiny model (2 processes, gloo, gradients all-reduced by DDP).

This file is both the test and the script the launcher runs (`__main__` below)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _traj(answer: list[int]):
    from rankact.agent.trajectory import ModelRef, Segment, Trajectory

    return Trajectory(question="q", model=ModelRef(backend="t", name="t"), prompt_version="v", segments=[
        Segment(role="prompt", text="p", token_ids=[1, 504, 3062, 28]),
        Segment(role="generated", text="a", token_ids=answer),
        Segment(role="observation", text="o", token_ids=[300, 301]),
        Segment(role="generated", text="b", token_ids=[answer[0] + 1]),
    ])


def run_in_launcher(model_dir: str, out: str) -> None:
    import torch.distributed as dist

    from rankact.agent.llm import GenerationConfig
    from rankact.agent.loop import Agent
    from rankact.alignment.feedback.preferences.pairs import PreferencePair
    from rankact.alignment.tasks import Task
    from rankact.alignment.training.dpo import DPOConfig, train_dpo
    from rankact.alignment.training.ppo.config import PPOConfig
    from rankact.alignment.training.ppo.trainer import train_ppo
    from rankact.alignment.training.runtime import make_accelerator
    from rankact.tools import calculator

    accelerator = make_accelerator()  # no GPU here: CPU processes over gloo
    assert accelerator.num_processes == 2 and dist.is_initialized()
    pairs = [PreferencePair(question_id=f"q{i}", question="q", chosen=_traj([2000 + i, 7]),
                            rejected=_traj([4000 + i, 9])) for i in range(4)]
    dpo = train_dpo(DPOConfig(out_dir=Path(out) / "dpo", base=model_dir, batch_size=4, max_steps=1,
                              learning_rate=1e-3, show_progress=False), pairs=pairs, accelerator=accelerator)

    def agent_factory(llm):
        return Agent(llm, [calculator], max_steps=1, max_parse_errors=1, guided=False,
                     generation=GenerationConfig(max_new_tokens=4, stop=["Observation:"]))

    ppo = train_ppo(PPOConfig(out_dir=Path(out) / "ppo", base=model_dir, iterations=1, tasks_per_iteration=2,
                              samples=1, minibatch_size=1, ppo_epochs=1, max_length=160, learning_rate=1e-3,
                              show_progress=False),
                    reward_fn=lambda t: float(len(t.transcript()) % 2),
                    tasks=[Task(question="What is 2 + 3?"), Task(question="What is 4 * 5?")],
                    agent_factory=agent_factory, accelerator=accelerator)
    # Every process must hold identical weights after the all-reduced updates.
    import torch
    from transformers import AutoModelForCausalLM

    checksum = torch.tensor([sum(p.double().sum().item() for p in
                                 AutoModelForCausalLM.from_pretrained(Path(out) / "ppo").parameters())])
    gathered = accelerator.gather(checksum)
    if accelerator.is_main_process:
        (Path(out) / "result.json").write_text(json.dumps({
            "dpo_steps": dpo.steps, "ppo_iterations": ppo.steps, "world": accelerator.num_processes,
            "checksums": gathered.tolist(), "ppo_rollouts": ppo.final_metrics.get("rollouts"),
        }))


@pytest.mark.slow
def test_accelerate_launch_two_processes(tmp_path, tiny_model_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    # `--cpu` with 2 processes goes through mpirun in accelerate 1.x; `--multi_gpu` is the
    # torchrun launcher, and Accelerator(cpu=True) then makes it MULTI_CPU over gloo.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           __file__, str(tiny_model_dir), str(tmp_path)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=170)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # A known flake, not yet root-caused: twice in ~10 CI runs, on busy cores, rank 0 aborted
        # in C++ (SIGABRT) right after DPO's reference log-probs; reruns passed. One retry on
        # exactly this signature; any other failure, or a second abort, still fails.
        proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2 and result["dpo_steps"] == 1 and result["ppo_iterations"] == 1
    assert result["ppo_rollouts"] == 2  # one task per process, gathered
    assert result["checksums"][0] == pytest.approx(result["checksums"][1], rel=0, abs=1e-9)
    assert (tmp_path / "dpo" / "config.json").is_file() and (tmp_path / "ppo" / "metrics.jsonl").is_file()


if __name__ == "__main__":
    run_in_launcher(sys.argv[1], sys.argv[2])


CONFIGS = Path(__file__).resolve().parents[3] / "alignment" / "training" / "accelerate"


@pytest.mark.parametrize(("name", "stage"), [("zero2.yaml", 2), ("zero3.yaml", 3)])
def test_the_shipped_deepspeed_configs_are_valid_accelerate_configs(name, stage):
    """Parsed by accelerate's own loader (unknown keys are an error there); deepspeed itself is
    not installed here, so these files were not run (docs/served-models.md)."""
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    path = CONFIGS / name
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type == "DEEPSPEED" and config.use_cpu is False
    ds = yaml.safe_load(path.read_text())["deepspeed_config"]
    assert ds["zero_stage"] == stage
    assert ds["gradient_clipping"] == 1.0  # the trainers' --max-grad-norm default; DeepSpeed clips in its step
    assert {ds["offload_optimizer_device"], ds["offload_param_device"]} == {"none"}
    if stage == 3:
        assert ds["zero3_init_flag"] is True and ds["zero3_save_16bit_model"] is True


def test_a_deepspeed_run_that_reports_no_gradient_norm_still_steps():
    import torch

    from rankact.alignment.training.runtime import clip_gradients

    class _DeepSpeedLike:  # accelerate returns None from clip_grad_norm_ when DeepSpeed clips itself
        device = torch.device("cpu")

        def clip_grad_norm_(self, params, max_norm):
            return None

    assert torch.isnan(clip_gradients(_DeepSpeedLike(), [], 1.0))
