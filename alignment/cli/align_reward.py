"""`rankact align reward` and `rankact align reward-eval`: train a Bradley-Terry reward model on
preference pairs and measure it on held-out pairs. Heavy imports happen inside the commands."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.errors import RankactError


def register(app: typer.Typer) -> None:
    app.command("reward")(reward)
    app.command("reward-eval")(reward_eval)


def reward(
    pairs: Annotated[Path, typer.Option("--pairs", help="pair JSONL (feedback export, HH-RLHF or TRL style; .gz ok)")],
    out: Annotated[Path, typer.Option("--out", help="folder for the reward model and its checkpoint")],
    base: Annotated[str | None, typer.Option("--base", help="backbone model folder (default: embedded SmolLM2-135M)")] = None,
    lora: Annotated[bool, typer.Option("--lora", help="train LoRA adapters (q,k,v,o) + head instead of all weights")] = False,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="optimizer steps (default: one epoch)")] = None,
    max_length: Annotated[int, typer.Option("--max-length", min=8, help="tokens per sequence (prompt cut from the left)")] = 512,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="pairs per micro-batch (groups never split)")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
    lr: Annotated[float, typer.Option("--lr")] = 1e-5,
    rows: Annotated[str | None, typer.Option("--range", help="rows A:B of the pair file")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/checkpoint")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="checkpoint every N steps")] = 50,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="stop (after a checkpoint) after this")] = None,
    margin: Annotated[float, typer.Option("--margin", help="margin in -log σ(r_c - r_r - margin)")] = 0.0,
    center: Annotated[float, typer.Option("--center", help="reward-centering coefficient")] = 0.0,
) -> None:
    """Train a reward model (Bradley-Terry) on preference pairs."""
    from alignment.feedback.pairs import read_pairs
    from alignment.training.reward.config import RewardTrainConfig
    from alignment.training.reward.train import train_reward

    if base is not None and not (Path(base) / "config.json").is_file():
        raise RankactError(f"--base is not a model folder (no config.json): {base}")
    data = read_pairs(pairs, rows)
    config = RewardTrainConfig(
        base=base, out=out, lora=lora, max_steps=max_steps, max_length=max_length, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, resume=resume, seed=seed, save_every=save_every, max_minutes=max_minutes,
        margin=margin, center_coef=center,
    )
    model, result = train_reward(config, data, log=typer.echo)
    if model is None:  # a non-main process under `accelerate launch`
        return
    typer.echo(
        f"{result.steps} steps in {result.seconds:.0f}s ({result.tokens_per_second:.0f} tokens/s); "
        f"last loss {result.final_loss:.4f}, running accuracy {result.running_accuracy:.3f}"
    )
    typer.echo(f"truncation: {result.truncation.describe()}")
    typer.echo(("checkpoint saved; rerun with --resume to finish -> " if result.stopped_early else "saved -> ")
               + str(out))


def reward_eval(
    model_dir: Annotated[Path, typer.Argument(help="a folder written by `rankact align reward`")],
    pairs: Annotated[Path, typer.Option("--pairs", help="held-out pair JSONL")],
    rows: Annotated[str | None, typer.Option("--range", help="rows A:B of the pair file")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Pairwise accuracy (Wilson 95% interval) and mean margin on held-out pairs."""
    from alignment.feedback.pairs import read_pairs
    from alignment.training.reward.evaluate import evaluate_pairs
    from alignment.training.reward.model import RewardModel

    data = read_pairs(pairs, rows)
    model = RewardModel.load(model_dir)
    result = evaluate_pairs(model, data, batch_size=batch_size)
    if json_out:
        typer.echo(result.model_dump_json())
        return
    typer.echo(result.describe())
    typer.echo(f"truncated: {result.truncated_prompts} prompts (left), {result.truncated_responses} responses "
               f"(right); {result.seconds:.1f}s")
