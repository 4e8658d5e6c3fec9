"""`rankact score DIR TRAJECTORY.json`: a trajectory's reward, raw and normalized."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rankact.alignment.errors import CommandError

app = typer.Typer(add_completion=False)


@app.command()
def score(
    model_dir: Annotated[Path, typer.Argument(help="a reward model folder (from `rankact align reward`)")],
    trajectory: Annotated[Path, typer.Argument(help="a trajectory JSON file")],
) -> None:
    """Score a trajectory with a reward model (rendered exactly as the policy saw it)."""
    from pydantic import ValidationError

    from rankact.agent.trajectory import Trajectory
    from rankact.alignment.training.reward.model import RewardModel

    if not trajectory.is_file():
        raise CommandError(f"trajectory file not found: {trajectory}")
    try:
        traj = Trajectory.from_json(trajectory.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise CommandError(f"{trajectory} is not a trajectory ({where}: {first['msg']})") from None
    model = RewardModel.load(model_dir)
    raw = model.score_trajectory(traj)
    typer.echo(f"raw {raw:.6f}\nnormalized {model.normalized(raw):.6f}")
