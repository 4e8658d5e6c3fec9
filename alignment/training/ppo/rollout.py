"""PPO rollouts: the real Agent, tools live, sampling K trajectories per question from the
policy being trained (wrapped without copying), each scored by a pluggable reward function.

`RewardFn` is any callable Trajectory -> float: the reward model's normalized score in
production (`reward_model_fn`), a toy function in tests. Penalties per parse error and per
step are added here, so every reward function gets them alike.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rankact.agent.batch import DEFAULT_BATCH_SIZE, Job, run_batch
from rankact.agent.trajectory import Trajectory
from rankact.alignment.tasks import Task
from rankact.alignment.tasks.agents import per_task
from rankact.alignment.training.tokenize import Encoded, encode_trajectory

RewardFn = Callable[[Trajectory], float]
# llm -> the agent(s) for the rollouts: one Agent, or a task -> Agent callable (`TaskAgents`).
AgentFactory = Callable[[object], object]


@dataclass
class Rollout:
    task: Task
    trajectory: Trajectory
    score: float  # the reward function's value
    reward: float  # score + penalties, clipped: what PPO maximises (before the KL term)
    encoded: Encoded
    success: float | None = None  # answer contains a gold answer (tasks with answers only)


def reward_model_fn(folder: str | Path, device: str | None = None) -> RewardFn:
    """The trained reward model's score, normalized with the statistics saved at training."""
    from rankact.alignment.training.reward.model import RewardModel

    model = RewardModel.load(folder)
    if device is not None:
        model.to(device)

    def score(trajectory: Trajectory) -> float:
        return float(model.normalized(model.score_trajectory(trajectory)))

    score.reward_model = model  # the critic may start from it
    return score


def sequence_reward(trajectory: Trajectory, score: float, parse_error_penalty: float, step_penalty: float,
                    clip: float | None) -> float:
    reward = score - parse_error_penalty * trajectory.parse_errors - step_penalty * len(trajectory.steps)
    if clip is not None:
        reward = max(-clip, min(clip, reward))
    return reward


def task_success(task: Task, trajectory: Trajectory) -> float | None:
    if not task.answers:
        return None
    from rankact.alignment.evaluation.evaluate import score_trajectory

    return score_trajectory(task, trajectory).success


def default_agent_factory(index: Path | None, max_steps: int, max_new_tokens: int, guided: bool | None):
    """llm -> the agents `rankact eval` builds (`TaskAgents`: each task's tools; search over
    `index` if given). The index is loaded here, once, before any model."""
    from rankact.agent.build import load_index
    from rankact.agent.llm import GenerationConfig
    from rankact.agent.loop import DEFAULT_GENERATION
    from rankact.alignment.tasks.agents import TaskAgents

    retriever = load_index(index) if index is not None else None
    generation = GenerationConfig(**{**DEFAULT_GENERATION.model_dump(), "max_new_tokens": max_new_tokens})
    options = {"generation": generation, **({"guided": guided} if guided is not None else {})}
    return lambda llm: TaskAgents(llm, retriever=retriever, max_steps=max_steps, **options)


def collect_rollouts(
    agents,
    tasks: Sequence[Task],
    samples: int,
    reward_fn: RewardFn,
    tokenizer,
    *,
    temperature: float,
    top_p: float,
    seed: int,
    max_length: int,
    parse_error_penalty: float = 0.0,
    step_penalty: float = 0.0,
    reward_clip: float | None = None,
    on_rollout: Callable[[], None] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Rollout]:
    """K sampled trajectories per task, `batch_size` of them in lockstep (`rankact.agent.batch`); each
    rollout has its own seed, so runs repeat whatever the batch make-up."""
    agent_for = per_task(agents)
    jobs = [Job(agent_for(task), task.question, temperature=temperature, top_p=top_p, seed=seed + t * samples + k)
            for t, task in enumerate(tasks) for k in range(samples)]
    trajectories = run_batch(jobs, batch_size=batch_size, on_done=(lambda *_: on_rollout()) if on_rollout else None)
    rollouts: list[Rollout] = []
    for (task, trajectory) in zip([task for task in tasks for _ in range(samples)], trajectories, strict=True):
        if isinstance(trajectory, BaseException):
            raise trajectory  # a bug, not a bad rollout: stop the training run
        score = float(reward_fn(trajectory))
        if not math.isfinite(score):
            score = 0.0  # a broken score must not poison the batch; counted as neutral
        reward = sequence_reward(trajectory, score, parse_error_penalty, step_penalty, reward_clip)
        encoded = encode_trajectory(trajectory, tokenizer, max_length)
        rollouts.append(Rollout(task, trajectory, score, reward, encoded, task_success(task, trajectory)))
    return rollouts


def iteration_tasks(tasks: Sequence[Task], iteration: int, per_iteration: int, seed: int,
                    rank: int = 0, world: int = 1) -> list[Task]:
    """Tasks for one iteration: walk a seeded shuffle of the task list, wrapping around. Each
    process takes every world-th one, padded so all processes get the same count (DDP
    needs the same number of optimizer steps on every process)."""
    import random

    order = list(range(len(tasks)))
    random.Random(seed).shuffle(order)
    start = iteration * per_iteration
    chosen = [tasks[order[(start + j) % len(order)]] for j in range(per_iteration)]
    share = math.ceil(len(chosen) / world)
    return [chosen[(rank + j * world) % len(chosen)] for j in range(share)]
