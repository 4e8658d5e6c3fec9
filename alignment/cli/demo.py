"""`rankact demo`: the whole loop (index, collect, rank, reward model, DPO, before/after) on the
embedded defaults. See alignment/demo.py for the stages."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="run folder (default ./runs/demo-<timestamp>)")] = None,
    samples: Annotated[int | None, typer.Option(min=2, help="trajectories per training question (K)")] = None,
    model: Annotated[str, typer.Option(help="policy to start from: default, or a model folder")] = "default",
    questions: Annotated[int | None, typer.Option(min=1, max=8, help="training questions (default 6)")] = None,
    heldout: Annotated[int | None, typer.Option(min=1, max=6, help="held-out questions (default 6)")] = None,
    quick: Annotated[bool, typer.Option(help="tiny sizes: a smoke test of every stage in a minute or two")] = False,
    seed: Annotated[int, typer.Option(help="sampling and training seed")] = 0,
) -> None:
    """Run the whole loop on the bundled corpus and print before/after figures."""
    from alignment.demo import DemoConfig, run_demo

    sizes = {"samples": samples, "train_questions": questions, "heldout_questions": heldout}
    if quick:
        config = DemoConfig.quick_config(out=out, model=model, seed=seed, **sizes)
    else:
        config = DemoConfig(out=out, model=model, seed=seed, **{k: v for k, v in sizes.items() if v is not None})
    run_demo(config)
