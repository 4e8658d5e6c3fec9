"""Training the agent's own LLM on rankings. Read in the order the data moves:

| module | step |
|---|---|
| `tokenize` | a `Trajectory` or a pair -> token ids, trainable mask, truncation, `collate` (every trainer) |
| `logprobs` | per-token log-probs of the trainable tokens: one decoder pass, the LM head over trainable positions in checkpointed chunks |
| `masked` | masked means, sums and whitening over `[batch, time]` |
| `losses` | DPO / IPO, Bradley-Terry, PPO policy and value losses, NLL: pure functions |
| `kl` | KL estimators and the KL-coefficient controllers |
| `advantages` | GAE over generated tokens only |
| `config` | the settings every trainer shares |
| `runtime` | accelerator, seeding, budget, progress, metrics, `TrainResult` |
| `checkpoint` | checkpoints for resume |
| `policy` | loading and saving the policy (LoRA optional) |
| `sft`, `dpo` | offline trainers on ranked pairs |
| `group_source` | the ranked groups GRPO reads: a store's rankings, or its questions scored by gold answers or a reward model |
| `reward/` | the Bradley-Terry reward model |
| `ppo/` | PPO with live tool rollouts |
"""
