"""`rankact align sft|dpo|ppo`: train the agent's own LLM. Each writes a model folder at
--out (loadable by `load_llm(DIR)` / `--model DIR`), with metrics.jsonl, metrics.png and a
checkpoint that `--resume` continues from. Heavy imports happen inside the commands."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from agent.errors import RankactError
from agent.loop import DEFAULT_MAX_STEPS

Out = Annotated[Path, typer.Option("--out", help="output folder: the trained policy, metrics and checkpoint")]
Base = Annotated[str | None, typer.Option("--base", help="model folder to start from (default: the embedded model)")]
Pairs = Annotated[Path | None, typer.Option("--pairs", help="pair file (JSONL from `rankact feedback export`)")]
Db = Annotated[str | None, typer.Option("--db", help="trajectory store URL: pairs from its rankings")]
Resume = Annotated[bool, typer.Option("--resume", help="continue from the checkpoint in --out")]
MaxMinutes = Annotated[float | None, typer.Option("--max-minutes", min=0.01, help="stop (and save) after M minutes")]
Lora = Annotated[bool, typer.Option("--lora", help="train LoRA adapters (merged into the saved policy)")]
Lr = Annotated[float | None, typer.Option("--lr", min=0.0, help="learning rate (default depends on --lora)")]
Seed = Annotated[int, typer.Option("--seed")]
MaxLength = Annotated[int, typer.Option("--max-length", min=8, help="tokens per trajectory (prompt cut first)")]


def _config(cls, **values):
    try:
        return cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RankactError(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _lora(enabled: bool):
    from alignment.training.policy import LoraSettings

    return LoraSettings() if enabled else None


def _done(kind: str, result) -> None:
    how = "stopped early (budget or --max-steps); --resume continues" if result.stopped_early else "done"
    typer.echo(f"{kind}: {result.steps} steps, {how}. Policy saved to {result.out_dir} "
               f"(use it with --model {result.out_dir}); metrics in {result.out_dir / 'metrics.jsonl'}")


def register(app: typer.Typer) -> None:
    @app.command("sft")
    def sft(
        out: Out, pairs: Pairs = None, db: Db = None, base: Base = None, resume: Resume = False,
        max_minutes: MaxMinutes = None,
        max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
        epochs: Annotated[int, typer.Option("--epochs", min=1)] = 1,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 2,
        lora: Lora = False, lr: Lr = None, max_length: MaxLength = 1024, seed: Seed = 0,
    ) -> None:
        """Best-of-K SFT: train on each question's top-ranked trajectories (generated tokens only)."""
        from alignment.training.sft import SFTConfig, train_sft

        config = _config(SFTConfig, out_dir=out, pairs=pairs, db=db, base=base, resume=resume,
                         max_minutes=max_minutes, max_steps=max_steps, epochs=epochs, batch_size=batch_size,
                         lora=_lora(lora), learning_rate=lr, max_length=max_length, seed=seed)
        _done("SFT", train_sft(config))

    @app.command("dpo")
    def dpo(
        out: Out, pairs: Pairs = None, db: Db = None, base: Base = None, resume: Resume = False,
        max_minutes: MaxMinutes = None,
        max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
        beta: Annotated[float, typer.Option("--beta", min=0.0, help="strength of the pull to the reference")] = 0.1,
        loss: Annotated[str, typer.Option("--loss", help="sigmoid (DPO) or ipo")] = "sigmoid",
        epochs: Annotated[int, typer.Option("--epochs", min=1)] = 1,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 2,
        lora: Lora = False, lr: Lr = None, max_length: MaxLength = 1024, seed: Seed = 0,
    ) -> None:
        """DPO from ranked pairs: log-ratios over generated tokens only, reference log-probs cached."""
        from alignment.training.dpo import DPOConfig, train_dpo

        config = _config(DPOConfig, out_dir=out, pairs=pairs, db=db, base=base, resume=resume,
                         max_minutes=max_minutes, max_steps=max_steps, beta=beta, loss_type=loss, epochs=epochs,
                         batch_size=batch_size, lora=_lora(lora), learning_rate=lr, max_length=max_length,
                         seed=seed)
        _done("DPO", train_dpo(config))

    @app.command("ppo")
    def ppo(
        out: Out,
        tasks: Annotated[Path, typer.Option("--tasks", help="task JSONL the agent answers in rollouts")],
        reward: Annotated[Path, typer.Option("--reward", help="reward model folder (`rankact align reward`)")],
        index: Annotated[Path | None, typer.Option("--index", help="retrieval index for the search tool")] = None,
        base: Base = None, resume: Resume = False, max_minutes: MaxMinutes = None,
        iterations: Annotated[int, typer.Option("--iterations", min=1)] = 10,
        samples: Annotated[int, typer.Option("--samples", min=1, help="K trajectories per question")] = 4,
        tasks_per_iteration: Annotated[int, typer.Option("--tasks-per-iteration", min=1)] = 2,
        kl_coef: Annotated[float, typer.Option("--kl-coef", min=0.0, help="β of the per-token KL penalty")] = 0.05,
        target_kl: Annotated[float | None, typer.Option("--target-kl", help="adaptive β toward this KL")] = None,
        probe: Annotated[Path | None, typer.Option("--probe", help="tasks with answers: greedy success")] = None,
        probe_every: Annotated[int, typer.Option("--probe-every", min=1)] = 1,
        critic: Annotated[str, typer.Option("--critic", help="head (on the policy) or reward (from --reward)")] = "head",
        parse_error_penalty: Annotated[float, typer.Option("--parse-error-penalty", min=0.0)] = 0.0,
        step_penalty: Annotated[float, typer.Option("--step-penalty", min=0.0)] = 0.0,
        temperature: Annotated[float, typer.Option("--temperature", min=0.01)] = 1.0,
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 128,
        agent_max_steps: Annotated[int, typer.Option("--agent-max-steps", min=1)] = DEFAULT_MAX_STEPS,
        guided: Annotated[bool | None, typer.Option("--guided/--no-guided",
                                                    help="guided decoding in rollouts (default: the agent's)")] = None,
        ppo_epochs: Annotated[int, typer.Option("--ppo-epochs", min=1)] = 2,
        minibatch_size: Annotated[int, typer.Option("--minibatch-size", min=1)] = 2,
        lora: Lora = False, lr: Lr = None, max_length: MaxLength = 1024, seed: Seed = 0,
    ) -> None:
        """PPO with live tools: K rollouts per question, reward model score minus per-token KL."""
        from alignment.training.ppo.config import PPOConfig
        from alignment.training.ppo.trainer import train_ppo

        config = _config(
            PPOConfig, out_dir=out, tasks=tasks, reward=reward, index=index, base=base, resume=resume,
            max_minutes=max_minutes, iterations=iterations, samples=samples, tasks_per_iteration=tasks_per_iteration,
            kl_coef=kl_coef, target_kl=target_kl, probe=probe, probe_every=probe_every, critic=critic,
            parse_error_penalty=parse_error_penalty, step_penalty=step_penalty, temperature=temperature,
            max_new_tokens=max_new_tokens, agent_max_steps=agent_max_steps, guided=guided, ppo_epochs=ppo_epochs,
            minibatch_size=minibatch_size, lora=_lora(lora), learning_rate=lr, max_length=max_length, seed=seed,
        )
        if not reward.is_dir():
            raise RankactError(f"reward model folder not found: {reward}")
        _done("PPO", train_ppo(config))
