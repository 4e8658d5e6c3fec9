"""`PPOConfig`: every PPO setting with a default that runs on a 2-core CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from agent.loop import DEFAULT_MAX_STEPS
from alignment.training.policy import LoraSettings


class PPOConfig(BaseModel):
    out_dir: Path
    tasks: Path | None = None  # task JSONL the rollouts answer (gold answers optional)
    reward: Path | None = None  # reward model folder; or pass reward_fn= from Python
    index: Path | None = None  # retrieval index for the search tool
    base: str | None = None  # policy to start from (None = embedded model); also the reference
    probe: Path | None = None  # task JSONL with gold answers: greedy success measured each probe_every
    probe_every: int = Field(1, ge=1)  # iterations between probe runs (and always after the last)

    # Rollouts: K samples per question from the real agent, tools live.
    iterations: int = Field(10, ge=1)
    tasks_per_iteration: int = Field(2, ge=1)
    samples: int = Field(4, ge=1)  # K trajectories per question
    temperature: float = Field(1.0, gt=0)  # sampling: PPO's ratios assume we sample from π itself
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1)  # per LLM call in the agent
    agent_max_steps: int = Field(DEFAULT_MAX_STEPS, ge=1)
    guided: bool | None = None  # None: the agent's own default
    max_length: int = Field(1024, ge=8)  # tokens per trajectory in training (prompt cut first)

    # Reward: the reward model's normalized score at the last generated token, plus penalties.
    parse_error_penalty: float = Field(0.0, ge=0)
    step_penalty: float = Field(0.0, ge=0)
    reward_clip: float | None = Field(5.0, gt=0)  # a runaway reward-model score cannot swamp the KL term

    # KL to the frozen reference: per-token penalty β·(log π - log ref) in the reward.
    kl_coef: float = Field(0.05, ge=0)
    target_kl: float | None = Field(None, gt=0)  # set: adaptive β toward this per-trajectory KL
    kl_horizon: int = Field(10_000, ge=1)

    # PPO update.
    learning_rate: float | None = None  # default: 1e-4 with LoRA, 1e-5 full
    ppo_epochs: int = Field(2, ge=1)
    minibatch_size: int = Field(2, ge=1)  # trajectories per optimizer step (per process)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    clip_range: float = Field(0.2, gt=0)
    clip_range_value: float | None = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    ent_coef: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    whiten_advantages: bool = True
    early_stop_kl: float | None = Field(None, gt=0)  # skip remaining epochs once approx KL passes it
    critic: Literal["head", "reward"] = "head"
    lora: LoraSettings | None = None

    max_minutes: float | None = Field(None, gt=0)
    resume: bool = False
    seed: int = 0
    show_progress: bool = True

    @property
    def lr(self) -> float:
        return self.learning_rate or (1e-4 if self.lora else 1e-5)
