"""`PPOConfig`: every PPO setting with a default that runs on a 2-core CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rankact.agent.batch import DEFAULT_BATCH_SIZE
from rankact.agent.loop import DEFAULT_MAX_STEPS
from rankact.alignment.training.config import PolicyTrainConfig


class PPOConfig(PolicyTrainConfig):
    tasks: Path | None = Field(None, description="task JSONL the agent answers in rollouts (gold answers optional)")
    reward: Path | None = Field(None, description="reward model folder (`rankact align reward`); or reward_fn=")
    index: Path | None = Field(None, description="retrieval index for the search tool")
    probe: Path | None = Field(None, description="tasks with answers: greedy success measured every --probe-every")
    probe_every: int = Field(1, ge=1, description="iterations between probe runs (and always after the last)")

    # Rollouts: K samples per question from the real agent, tools live.
    iterations: int = Field(10, ge=1, description="rollout + update iterations")
    tasks_per_iteration: int = Field(2, ge=1, description="questions per iteration")
    samples: int = Field(4, ge=1, description="K trajectories per question")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (PPO's ratios assume we sample from π)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (keep 1 for exact PPO ratios)")
    max_new_tokens: int = Field(128, ge=1, description="tokens per LLM call in the agent")
    agent_max_steps: int = Field(DEFAULT_MAX_STEPS, ge=1, description="agent steps per rollout")
    guided: bool | None = Field(None, description="guided decoding in rollouts (default: where the backend allows)")
    rollout_batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, description="rollouts advanced together in lockstep")
    served_policy: str | None = Field(None, description="vLLM server(s) that do the rollouts (http://HOST/v1, or "
                                      "comma-separated URLs): the LoRA adapter is pushed to them after each "
                                      "iteration (needs --lora)")

    # Reward: the reward model's normalized score at the last generated token, plus penalties.
    parse_error_penalty: float = Field(0.0, ge=0, description="subtracted per parse error")
    step_penalty: float = Field(0.0, ge=0, description="subtracted per agent step")
    reward_clip: float | None = Field(5.0, gt=0, description="clip the reward (a runaway score cannot swamp KL)")

    # KL to the frozen reference: per-token penalty β·(log π - log ref) in the reward.
    kl_coef: float = Field(0.05, ge=0, description="β of the per-token KL penalty")
    target_kl: float | None = Field(None, gt=0, description="adaptive β toward this per-trajectory KL")
    kl_horizon: int = Field(10_000, ge=1, description="horizon of the adaptive KL controller")

    # PPO update.
    ppo_epochs: int = Field(2, ge=1, description="passes over each batch of experience")
    minibatch_size: int = Field(2, ge=1, description="trajectories per optimizer step (per process)")
    gamma: float = Field(1.0, ge=0, le=1, description="discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ")
    clip_range: float = Field(0.2, gt=0, description="policy ratio clip ε")
    clip_range_value: float | None = Field(0.2, gt=0, description="value clip (None: no clipping)")
    vf_coef: float = Field(0.1, ge=0, description="value-loss weight")
    ent_coef: float = Field(0.0, ge=0, description="entropy bonus weight")
    whiten_advantages: bool = Field(True, description="normalise advantages over the batch's trainable tokens")
    early_stop_kl: float | None = Field(None, gt=0, description="skip remaining epochs once approx KL passes it")
    critic: Literal["head", "reward"] = Field("head", description="head (on the policy) or reward (from --reward)")
    save_every: int = Field(1, ge=1, description="checkpoint every N iterations")
