"""`rankact align reward` and `rankact align reward-eval`: train a Bradley-Terry reward model on
preference pairs and measure it on held-out pairs. The training options are
`RewardTrainConfig`'s fields (`rankact.cli.config_options`)."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from rankact.alignment.training.reward.config import RewardTrainConfig
from rankact.cli.config_options import config_command

_DATA = [
    inspect.Parameter("pairs", inspect.Parameter.KEYWORD_ONLY, annotation=Path, default=typer.Option(
        ..., "--pairs", help="pair JSONL (feedback export, HH-RLHF or TRL style; .gz ok)")),
    inspect.Parameter("rows", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=typer.Option(
        None, "--range", help="rows A:B of the pair file")),
]


def _train(config: RewardTrainConfig, pairs: Path, rows: str | None) -> None:
    from rankact.alignment.feedback.preferences.pairs import read_pairs
    from rankact.alignment.training.policy import resolve_base
    from rankact.alignment.training.reward.train import train_reward
    from rankact.alignment.training.tokenize import TruncationStats

    resolve_base(config.base)  # a bad --base fails before the data is read
    model, result = train_reward(config, read_pairs(pairs, rows), log=typer.echo)
    if model is None:  # a non-main process under `accelerate launch`
        return
    metrics = result.final_metrics
    typer.echo(
        f"{result.steps} steps in {result.seconds:.0f}s ({result.tokens_per_second:.0f} tokens/s); "
        f"last loss {metrics.get('loss', float('nan')):.4f}, running accuracy {metrics.get('accuracy', float('nan')):.3f}"
    )
    typer.echo(f"truncation: {TruncationStats(**result.notes['truncation']).describe()}")
    typer.echo(("checkpoint saved; rerun with --resume to finish -> " if result.stopped_early else "saved -> ")
               + str(config.out_dir))


def register(app: typer.Typer) -> None:
    config_command(app, "reward", RewardTrainConfig, _train, extra=_DATA,
                   help="Train a reward model (Bradley-Terry) on preference pairs.")
    app.command("reward-eval")(reward_eval)


def reward_eval(
    model_dir: Annotated[Path, typer.Argument(help="a folder written by `rankact align reward`")],
    pairs: Annotated[Path, typer.Option("--pairs", help="held-out pair JSONL")],
    rows: Annotated[str | None, typer.Option("--range", help="rows A:B of the pair file")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Pairwise accuracy (Wilson 95% interval) and mean margin on held-out pairs."""
    from rankact.alignment.feedback.preferences.pairs import read_pairs
    from rankact.alignment.training.reward.evaluate import evaluate_pairs
    from rankact.alignment.training.reward.model import RewardModel

    data = read_pairs(pairs, rows)
    model = RewardModel.load(model_dir)
    result = evaluate_pairs(model, data, batch_size=batch_size)
    if json_out:
        typer.echo(result.model_dump_json())
        return
    typer.echo(result.describe())
    typer.echo(f"truncated: {result.truncated_prompts} prompts (left), {result.truncated_responses} responses "
               f"(right); {result.seconds:.1f}s")
