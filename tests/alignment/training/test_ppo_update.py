"""PPO on a tiny model (full fine-tuning with a frozen copy as reference; LoRA with the adapters
switched off as reference). (1) A one-step toy task with a known best answer: the reward is 1
when the first generated token is a target token; one PPO iteration (experience + minibatch
epochs) must raise the policy's expected reward, computed exactly from its distribution.
(2) A smoke test of the full Agent-driven iteration (LoRA) with checkpoint + resume."""
from __future__ import annotations

import copy
import json

import torch

from rankact.alignment.training.policy import load_policy
from rankact.alignment.training.ppo.actor_critic import ActorCritic
from rankact.alignment.training.ppo.config import PPOConfig
from rankact.alignment.training.ppo.trainer import make_experience, ppo_update
from rankact.alignment.training.tokenize import encode_prompt_completion

PROMPT = [1, 504, 3062, 28, 2114]


def _target_prob(policy, token: int) -> float:
    with torch.no_grad():
        logits = policy(input_ids=torch.tensor([PROMPT])).logits[0, -1]
    return torch.softmax(logits.float(), -1)[token].item()


def test_one_ppo_iteration_raises_expected_reward(tmp_path, tiny_model_dir):
    torch.manual_seed(0)
    policy, tokenizer = load_policy(tiny_model_dir)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    actor_critic = ActorCritic(policy)
    # Rollouts: 16 first tokens sampled from the policy itself (on-policy), then EOS.
    with torch.no_grad():
        probs = torch.softmax(policy(input_ids=torch.tensor([PROMPT])).logits[0, -1], -1)
    tokens = torch.multinomial(probs, 16, replacement=True, generator=torch.Generator().manual_seed(0)).tolist()
    target = tokens[0]  # the known best answer; sampled at least once, so it gets credit
    rewards = [1.0 if t == target else 0.0 for t in tokens]
    samples = [encode_prompt_completion(PROMPT, [t, tokenizer.eos_token_id]) for t in tokens]
    before = _target_prob(policy, target)

    config = PPOConfig(out_dir=tmp_path, learning_rate=1e-2, ppo_epochs=2, minibatch_size=8, kl_coef=0.05)
    exp = make_experience(actor_critic, reference, samples, rewards, config.kl_coef, config,
                          tokenizer.pad_token_id, "cpu")
    assert abs(exp.stats["kl"]) < 1e-5  # policy == reference before the update
    # Prompt tokens never get an advantage.
    assert exp.advantages[:, : len(PROMPT)].abs().max().item() == 0.0
    optimizer = torch.optim.AdamW([p for p in actor_critic.parameters() if p.requires_grad], lr=config.lr)
    stats = ppo_update(actor_critic, optimizer, exp, config, generator=torch.Generator().manual_seed(0))
    after = _target_prob(policy, target)
    assert after > 1.5 * before, (before, after, stats)
    assert stats["value_loss"] > 0 and 0.0 <= stats["clipfrac"] <= 1.0


def test_agent_driven_ppo_iteration_checkpoints_and_resumes(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from rankact.agent.llm import GenerationConfig
    from rankact.agent.loop import Agent
    from rankact.alignment.tasks import Task
    from rankact.alignment.training.policy import LoraSettings
    from rankact.alignment.training.ppo.trainer import train_ppo
    from rankact.tools import calculator

    def agent_factory(llm):
        return Agent(llm, [calculator], max_steps=1, max_parse_errors=1, guided=False,
                     generation=GenerationConfig(max_new_tokens=6, stop=["Observation:"]))

    seen = []

    def toy_reward(trajectory) -> float:
        seen.append(trajectory)
        return float(len(trajectory.transcript()) % 3)  # any deterministic function of the trajectory

    tasks = [Task(question="What is 2 + 3?", answers=["5"])]
    out = tmp_path / "ppo"
    config = PPOConfig(out_dir=out, base=str(tiny_model_dir), iterations=1, tasks_per_iteration=1, samples=2,
                       minibatch_size=2, ppo_epochs=1, learning_rate=1e-3, target_kl=1.0, max_length=128,
                       lora=LoraSettings(r=4, alpha=8), show_progress=False)
    result = train_ppo(config, reward_fn=toy_reward, tasks=tasks, agent_factory=agent_factory)
    assert result.steps == 1 and len(seen) == 2
    # The local backend recorded token ids for what the model generated: no re-tokenizing.
    assert any(s.role == "generated" and s.token_ids for s in seen[0].segments)
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("mean_reward", "kl", "kl_coef", "entropy", "clipfrac", "value_loss", "parse_error_rate", "success"):
        assert key in record
    assert record["success"] in (0.0, 1.0) and (out / "metrics.png").is_file()
    assert AutoModelForCausalLM.from_pretrained(out) is not None

    resumed = train_ppo(config.model_copy(update={"iterations": 2, "resume": True}), reward_fn=toy_reward,
                        tasks=tasks, agent_factory=agent_factory)
    assert resumed.steps == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    # Iteration 1 starts at the reference (KL 0); after resume the trained adapters are back,
    # so the policy differs from the reference (adapters off).
    assert records[0]["kl_k3_token"] < 1e-6 < records[1]["kl_k3_token"]


def test_reward_model_critic_trains_and_leaves_reward_model_alone(tmp_path, tiny_model_dir):
    from rankact.alignment.training.ppo.actor_critic import RewardCritic
    from rankact.alignment.training.reward.model import RewardModel

    torch.manual_seed(0)
    policy, tokenizer = load_policy(tiny_model_dir)
    reward_model = RewardModel.from_base(tiny_model_dir)
    head_before = reward_model.head.weight.detach().clone()
    actor_critic = ActorCritic(policy, RewardCritic(reward_model))
    samples = [encode_prompt_completion(PROMPT, [900 + i, 901]) for i in range(4)]
    config = PPOConfig(out_dir=tmp_path, learning_rate=1e-2, ppo_epochs=1, minibatch_size=4)
    exp = make_experience(actor_critic, policy, samples, [1.0, 0.0, 1.0, 0.0],
                          0.05, config, tokenizer.pad_token_id, "cpu")
    # The critic starts from the reward model's head: values are its per-token scores, not 0.
    assert exp.old_values[:, len(PROMPT):].abs().sum().item() > 0
    optimizer = torch.optim.AdamW([p for p in actor_critic.parameters() if p.requires_grad], lr=config.lr)
    ppo_update(actor_critic, optimizer, exp, config)
    assert not torch.equal(actor_critic.critic.head.weight, head_before)
    assert torch.equal(reward_model.head.weight, head_before)  # the critic is a copy
