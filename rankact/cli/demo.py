"""`rankact demo`: one round of the loop (before, collect, rank, train, after) on arithmetic
with the embedded defaults. See alignment/demo.py for the stages."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="run folder (default ./runs/demo-<timestamp>)")] = None,
    samples: Annotated[int | None, typer.Option(min=2, help="trajectories per training question (K, default 4)")] = None,
    model: Annotated[str, typer.Option(help="policy to start from: base (the embedded model, untuned), default (with "
                                        "rankact's adapter) or a model folder")] = "base",
    questions: Annotated[int | None, typer.Option(min=1, max=100, help="training questions (default 12)")] = None,
    heldout: Annotated[int | None, typer.Option(min=1, max=100, help="held-out questions (default 24)")] = None,
    method: Annotated[str | None, typer.Option(help="trainer: sft (default), grpo or dpo")] = None,
    rounds: Annotated[int | None, typer.Option(min=1, max=10, help="collect -> rank -> train rounds (default 2)")] = None,
    quick: Annotated[bool, typer.Option(help="tiny sizes: a smoke test of every stage in a minute or two")] = False,
    seed: Annotated[int, typer.Option(help="sampling and training seed")] = 0,
) -> None:
    """Train the agent from (simulated) rankings and print before/after on held-out questions."""
    from rankact.alignment.demo import DemoConfig, run_demo
    from rankact.alignment.errors import CommandError

    if out is not None and out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; give a folder for the run (new or one to resume)")
    if method is not None and method not in ("grpo", "sft", "dpo"):
        raise CommandError(f"--method must be sft, grpo or dpo, not {method!r}")
    sizes = {"samples": samples, "train_questions": questions, "heldout_questions": heldout, "method": method,
             "rounds": rounds}
    if quick:
        config = DemoConfig.quick_config(out=out, model=model, seed=seed, **sizes)
    else:
        config = DemoConfig(out=out, model=model, seed=seed, **{k: v for k, v in sizes.items() if v is not None})
    run_demo(config)
