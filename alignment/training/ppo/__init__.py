"""PPO on the agent's own LLM: rollouts with live tools (`rollout`), the actor-critic model
(`actor_critic`), the trainer (`trainer`) and its settings (`config`)."""
