"""`rankact align ...`: reward model training and evaluation, and policy training (SFT, DPO, GRPO, PPO).
The two halves live in their own modules; each exposes `register(app)`."""
import typer

from rankact.cli import align_policy, align_reward

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train: reward model, SFT, DPO, GRPO, PPO.")
align_reward.register(app)
align_policy.register(app)
