"""Training the agent's own LLM on rankings. Every module, in the order the data moves:

| module | step |
|---|---|
| `tokenize` | a `Trajectory` or a pair -> token ids, trainable mask, truncation, `collate` (every trainer) |
| `logprobs` | per-token log-probs of the trainable tokens: one decoder pass, the LM head over trainable positions in checkpointed chunks |
| `masked` | masked means, sums and whitening over `[batch, time]` |
| `losses` | DPO / IPO, Bradley-Terry, PPO policy and value losses, GRPO, NLL: pure functions |
| `kl` | KL estimators and the KL-coefficient controllers |
| `advantages` | GAE over generated tokens only; group advantages (GRPO) |
| `config` | the settings every trainer shares (pydantic only, no torch, like every `*_config`) |
| `runtime` | accelerator, seeding, budget, progress, metrics, `TrainResult` |
| `checkpoint` | checkpoints for resume |
| `policy` | loading and saving the policy (LoRA optional) |
| `offline` | the step loop SFT, DPO and GRPO share; each supplies its data and its loss |
| `sft`, `dpo` (+ `sft_config`, `dpo_config`) | offline trainers on ranked pairs (best-of-K SFT, DPO) |
| `grpo` (+ `grpo_config`) | group-relative training straight from each question's ranking |
| `group_source` | the ranked groups GRPO reads: a store's rankings, or its questions scored by gold answers or a reward model |
| `replay`, `monitors`, `reference` | the replay term, drift monitors, cached reference log-probs |
| `reward/` | the Bradley-Terry reward model |
| `ppo/` | PPO with live tool rollouts |
| `lora_publisher` | the policy's LoRA adapter pushed to a vLLM server after each iteration |
| `adapter_export` | a trained policy as a LoRA adapter against its base (SVD) |
"""
