"""PPO on the agent's own LLM over multi-turn tool trajectories (read top to bottom).

One iteration:
 1. Rollouts: the real Agent, tools live, samples K trajectories per question from the
    current policy (`ppo_rollout.collect_rollouts`); each is scored by the reward function.
 2. Experience (`make_experience`, no gradients): teacher-forced log-probs of the sampled
    tokens under the policy (old_logp) and the frozen reference (ref_logp), critic values.
    Per-token reward = -β·(old_logp - ref_logp) on every generated token, plus the
    trajectory's reward on its last generated token. GAE skips prompt and observation
    tokens (see `rankact.alignment.training.advantages.gae`), so tool output is never credited or blamed.
 3. Update (`ppo_update`): a few epochs of shuffled minibatches with the clipped policy
    loss, clipped value loss and an optional entropy bonus; gradient clipping.
 4. KL controller update, metrics (JSONL + PNG), checkpoint.
 5. With `served_policy` (vLLM), the LoRA adapter is pushed to the server and the next
    rollouts name it (`rankact.alignment.training.lora_publisher`); the rollouts come back with the
    server's token ids, and steps 2-3 recompute the log-probs here, so PPO stays exact.

Call from Python: `train_ppo(PPOConfig(...), reward_fn=..., tasks=[...])`.
"""
from __future__ import annotations

import copy
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rankact.agent.errors import RankactError
from rankact.alignment.tasks import Task, load_tasks
from rankact.alignment.tasks.agents import per_task
from rankact.alignment.training.advantages import gae
from rankact.alignment.training.kl import kl_k1, kl_k3, make_kl_controller
from rankact.alignment.training.logprobs import hidden_logprobs, lm_head, token_logprobs
from rankact.alignment.training.losses import policy_loss, value_loss
from rankact.alignment.training.masked import masked_mean, whiten, zero_masked
from rankact.alignment.training.policy import enable_gradient_checkpointing, is_peft, load_policy, save_policy
from rankact.alignment.training.ppo.actor_critic import ActorCritic, RewardCritic
from rankact.alignment.training.ppo.config import PPOConfig
from rankact.alignment.training.ppo.rollout import (
    AgentFactory,
    RewardFn,
    collect_rollouts,
    default_agent_factory,
    iteration_tasks,
    reward_model_fn,
    task_success,
)
from rankact.alignment.training.runtime import TrainingRun, TrainResult
from rankact.alignment.training.tokenize import Encoded, collate, pad_token_id

log = logging.getLogger(__name__)
PLOT_KEYS = ["mean_reward", "mean_score", "kl", "kl_coef", "entropy", "clipfrac", "value_loss",
             "parse_error_rate", "success", "probe_success"]


@dataclass
class Experience:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask: torch.Tensor  # trainable tokens
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    stats: dict[str, float]

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def reference_context(actor_critic: ActorCritic, reference):
    """With LoRA the reference is the base model: the same weights with adapters switched off,
    so no second copy is held. Otherwise a frozen copy taken before training."""
    if reference is None and is_peft(actor_critic.policy):
        return actor_critic.policy.disable_adapter()
    return nullcontext()


@torch.no_grad()
def make_experience(actor_critic: ActorCritic, reference, samples: list[Encoded], rewards: list[float],
                    kl_coef: float, config: PPOConfig, pad_id: int, device) -> Experience:
    """Everything the update needs, computed once with the rollout-time policy."""
    actor_critic.eval()
    batch = collate(samples, pad_id).to(device)
    mask = batch.trainable_mask
    # Rollouts sampled from softmax(logits / T): that tempered distribution is the policy whose
    # ratios PPO takes (as TRL does). top_p < 1 would truncate it further; keep it at 1 for PPO.
    hidden, values = actor_critic(batch.input_ids, batch.attention_mask)
    old_logp, entropy = hidden_logprobs(lm_head(actor_critic), hidden, batch.input_ids, mask,
                                        temperature=config.temperature, with_entropy=True,
                                        chunk_size=config.logprob_chunk)
    entropy = masked_mean(entropy, mask)
    del hidden
    with reference_context(actor_critic, reference):
        ref_model = reference if reference is not None else actor_critic.policy
        ref_logp, _ = token_logprobs(ref_model, batch.input_ids, batch.attention_mask, mask,
                                     temperature=config.temperature, chunk_size=config.logprob_chunk)

    # Per-token reward: the KL penalty keeps the policy near the reference token by token
    # (k1: its sum over a trajectory is the sequence log-ratio); the trajectory's reward
    # lands on its last generated token, where the episode's outcome is decided.
    kl = zero_masked(kl_k1(old_logp, ref_logp), mask)
    token_rewards = -kl_coef * kl
    last = batch.last_trainable_index
    has_tokens = last >= 0
    score = torch.tensor(rewards, dtype=token_rewards.dtype, device=device)
    rows = torch.arange(len(samples), device=device)[has_tokens]
    token_rewards[rows, last[has_tokens]] += score[has_tokens]

    values = zero_masked(values, mask)
    advantages, returns = gae(token_rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        # Normalise over valid tokens of the whole batch: the scale of rewards then does
        # not set the step size (CleanRL's norm_adv).
        advantages = whiten(advantages, mask)
    actor_critic.train()
    stats = {
        "kl": kl.sum(-1).mean().item(),  # per trajectory, what the adaptive controller targets
        "kl_k3_token": masked_mean(kl_k3(old_logp, ref_logp), mask).item(),
        "entropy": entropy.item(),
        "value_mean": masked_mean(values, mask).item(),
        "trainable_tokens": float(mask.sum().item()),
    }
    return Experience(batch.input_ids, batch.attention_mask, mask, old_logp, values, advantages, returns, stats)


def ppo_update(model, optimizer, exp: Experience, config: PPOConfig, accelerator=None,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """Minibatch epochs over one batch of experience. `model` may be DDP-wrapped."""
    params = [p for p in model.parameters() if p.requires_grad]
    head = lm_head(model)
    sums: dict[str, float] = {}
    count = 0
    for _epoch in range(config.ppo_epochs):
        order = torch.randperm(len(exp), generator=generator)
        approx_kls = []
        for start in range(0, len(exp), config.minibatch_size):
            idx = order[start : start + config.minibatch_size].to(exp.input_ids.device)
            mask = exp.mask[idx]
            # The forward goes through `model` (DDP's one forward per backward); the head is
            # then applied to trainable positions only, in chunks.
            hidden, values = model(exp.input_ids[idx], exp.attention_mask[idx])
            logp, entropy = hidden_logprobs(head, hidden, exp.input_ids[idx], mask, temperature=config.temperature,
                                            with_entropy=bool(config.ent_coef), chunk_size=config.logprob_chunk)
            pg_loss, pg_stats = policy_loss(logp, exp.old_logp[idx], exp.advantages[idx], mask, config.clip_range)
            vf_loss, vf_stats = value_loss(values, exp.old_values[idx], exp.returns[idx], mask,
                                           config.clip_range_value)
            entropy = masked_mean(entropy, mask) if entropy is not None else pg_loss.new_zeros(())
            # One scalar loss, one backward: the critic shares the backbone with the policy,
            # vf_coef keeps its larger gradients from dominating the shared layers.
            loss = pg_loss + config.vf_coef * vf_loss - config.ent_coef * entropy
            if accelerator is not None:
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step = {"policy_loss": pg_loss.item(), "value_loss": vf_loss.item(), **{k: v.item() for k, v in
                    {**pg_stats, **vf_stats}.items()}}
            for key, value in step.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            approx_kls.append(step["approx_kl"])
        # CleanRL's target_kl: stop re-using this batch once the policy moved too far from it.
        if config.early_stop_kl is not None and sum(approx_kls) / len(approx_kls) > config.early_stop_kl:
            break
    return {key: value / max(count, 1) for key, value in sums.items()}


def _probe(agents, probe: list[Task]) -> float:
    """Greedy success on held-out probe tasks (temperature 0: the policy's own best answer)."""
    agent_for = per_task(agents)
    results = [task_success(task, agent_for(task).run(task.question, temperature=0.0)) for task in probe]
    results = [r for r in results if r is not None]
    return sum(results) / len(results) if results else float("nan")


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def _served_rollouts(config: PPOConfig, policy, tokenizer):
    """The rollout backend on vLLM (token ids in and out, so PPO trains exactly) and the
    publisher that keeps its adapter current."""
    from rankact.agent.llm.token_io import ServedTokensLLM
    from rankact.alignment.training.lora_publisher import LoraPublisher

    publisher = LoraPublisher(config.served_policy, config.out_dir / "served-adapters")
    return ServedTokensLLM(config.served_policy, tokenizer, api="vllm", model=None), publisher


def _publish(publisher, policy, iteration: int, llm, run) -> None:
    """Rank 0 pushes the adapter; every process names it once it is loaded."""
    if run.is_main:
        publisher.publish(policy, iteration, llm)
    run.accelerator.wait_for_everyone()
    llm.use_model(f"{publisher.prefix}-{iteration}")


def train_ppo(config: PPOConfig, reward_fn: RewardFn | None = None, tasks: list[Task] | None = None,
              agent_factory: AgentFactory | None = None, probe: list[Task] | None = None,
              accelerator=None) -> TrainResult:
    from rankact.agent.llm.local import TransformersLLM

    run = TrainingRun(config, "PPO", accelerator=accelerator, seed_per_process=True)
    tasks = tasks if tasks is not None else (load_tasks(config.tasks) if config.tasks else None)
    if not tasks:
        raise RankactError("PPO needs tasks: give --tasks FILE (JSONL with questions)")
    if config.served_policy and config.lora is None:
        raise RankactError("--served-policy needs --lora: vLLM loads LoRA adapters at run time, not whole models")
    if probe is None and config.probe is not None:
        probe = load_tasks(config.probe)
    # The agent factory loads the index: a bad one fails here, before any model is loaded.
    factory = agent_factory or default_agent_factory(config.index, config.agent_max_steps, config.max_new_tokens,
                                                     config.guided)
    if reward_fn is None:
        if config.reward is None:
            raise RankactError("PPO needs a reward: give --reward DIR (a trained reward model)")
        reward_fn = reward_model_fn(config.reward, device=str(run.device))

    # Policy, critic, reference. The reference is the starting policy, frozen.
    policy, tokenizer = load_policy(config.base, config.lora)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    critic = None
    if config.critic == "reward":
        rm = getattr(reward_fn, "reward_model", None)
        if rm is None:
            raise RankactError("--critic reward needs --reward DIR (a reward model to start the critic from)")
        critic = RewardCritic(rm)
    actor_critic = ActorCritic(policy, critic)
    reference = None
    if not is_peft(policy):
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    params = [p for p in actor_critic.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, eps=1e-5)  # eps 1e-5: CleanRL/ppo2 default
    kl_ctl = make_kl_controller(config.kl_coef, config.target_kl, config.kl_horizon)
    run_key = {"tasks": len(tasks), "tasks_per_iteration": config.tasks_per_iteration, "samples": config.samples,
               "seed": config.seed, "world": run.world}
    state = run.resume(actor_critic, optimizer, run_key)
    kl_ctl.value = state.get("kl_coef", kl_ctl.value)
    actor_critic.to(run.device)
    if reference is not None:
        reference.to(run.device)
    model, optimizer = run.accelerator.prepare(actor_critic, optimizer)
    pad_id = pad_token_id(tokenizer)

    # Rollouts use the very module being trained, wrapped without a copy. With LoRA the
    # base model has the adapters injected in place, so generation sees them too.
    # With --served-policy, vLLM does them on the adapter pushed after each iteration.
    publisher = None
    if config.served_policy:
        llm, publisher = _served_rollouts(config, policy, tokenizer)
        _publish(publisher, policy, state.get("iteration", 0), llm, run)
    else:
        generator_model = policy.get_base_model() if is_peft(policy) else policy
        llm = TransformersLLM.from_pretrained_objects(generator_model, tokenizer, name="ppo-policy")
    agents = factory(llm)

    shuffle = torch.Generator().manual_seed(config.seed + run.rank)
    iteration = state.get("iteration", 0)
    run.start(config.iterations, initial=iteration)
    last: dict[str, float] = {}
    tokens = 0
    while iteration < config.iterations and not run.over_budget():
        started = time.monotonic()
        batch_tasks = iteration_tasks(tasks, iteration, config.tasks_per_iteration, config.seed, run.rank, run.world)
        # 1. Rollouts (eval mode: no dropout, the distribution we compute ratios against).
        actor_critic.eval()
        with torch.no_grad():
            rollouts = collect_rollouts(
                agents, batch_tasks, config.samples, reward_fn, tokenizer,
                temperature=config.temperature, top_p=config.top_p,
                seed=config.seed + 1_000_003 * iteration + 10_007 * run.rank, max_length=config.max_length,
                parse_error_penalty=config.parse_error_penalty, step_penalty=config.step_penalty,
                reward_clip=config.reward_clip, batch_size=config.rollout_batch_size,
            )
        rollout_s = time.monotonic() - started
        # 2. Experience, 3. update.
        exp = make_experience(actor_critic, reference, [r.encoded for r in rollouts], [r.reward for r in rollouts],
                              kl_ctl.value, config, pad_id, run.device)
        update = ppo_update(model, optimizer, exp, config, run.accelerator, shuffle)
        iteration += 1
        if publisher is not None and iteration < config.iterations:
            _publish(publisher, policy, iteration, llm, run)  # the next rollouts run on what was just trained
        tokens += sum(len(r.encoded) for r in rollouts)
        # 4. KL controller on the measured per-trajectory KL (mean over processes).
        local = torch.tensor([
            exp.stats["kl"], _mean(r.reward for r in rollouts), _mean(r.score for r in rollouts),
            _mean(float(r.trajectory.parse_errors > 0) for r in rollouts),
            _mean(len(r.trajectory.steps) for r in rollouts),
        ], device=run.device)
        kl_mean, mean_reward, mean_score, parse_rate, mean_steps = run.accelerator.reduce(local, "mean").tolist()
        kl_ctl.update(kl_mean, n_steps=len(rollouts) * run.world)
        record = {
            "iteration": iteration, "mean_reward": mean_reward, "mean_score": mean_score, "kl": kl_mean,
            "kl_coef": kl_ctl.value, "parse_error_rate": parse_rate, "mean_steps": mean_steps,
            "success": _mean(r.success for r in rollouts), "rollouts": len(rollouts) * run.world,
            "entropy": exp.stats["entropy"], "kl_k3_token": exp.stats["kl_k3_token"], **update,
            "rollout_seconds": round(rollout_s, 2), "iteration_seconds": round(time.monotonic() - started, 2),
        }
        probe_now = iteration % config.probe_every == 0 or iteration == config.iterations
        if probe and probe_now and run.is_main:
            actor_critic.eval()
            with torch.no_grad():
                record["probe_success"] = _probe(agents, probe)
            actor_critic.train()
        run.log(record, reward=mean_reward, kl=kl_mean)
        last = {k: float(v) for k, v in record.items() if isinstance(v, (int, float))}
        if iteration % config.save_every == 0 or iteration == config.iterations:
            run.save(model, optimizer, {"iteration": iteration, "kl_coef": kl_ctl.value})
    run.save(model, optimizer, {"iteration": iteration, "kl_coef": kl_ctl.value})
    trained = run.accelerator.unwrap_model(model).policy
    run.finish(PLOT_KEYS, x_key="iteration", save=lambda: save_policy(
        trained, tokenizer, config.out_dir,
        {"trainer": "ppo", "iterations": iteration, "config": config.model_dump(mode="json")}))
    return run.result(iteration, iteration < config.iterations, last, tokens=tokens * run.world)
