"""`rankact align sft|dpo|grpo|ppo`: train the agent's own LLM. Each writes a model folder at
--out (loadable by `load_llm(DIR)` / `--model DIR`), with metrics.jsonl, metrics.png and a
checkpoint that `--resume` continues from. The options are the trainers' configs
(`rankact.cli.config_options`); heavy imports happen inside the commands."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from rankact.alignment.errors import CommandError
from rankact.alignment.rounds_config import RoundsConfig
from rankact.alignment.training.dpo_config import DPOConfig
from rankact.alignment.training.grpo_config import GRPOConfig
from rankact.alignment.training.ppo.config import PPOConfig
from rankact.alignment.training.sft_config import SFTConfig
from rankact.cli.config_options import config_command


def _done(kind: str, result) -> None:
    how = "stopped early (budget or --max-steps); --resume continues" if result.stopped_early else "done"
    typer.echo(f"{kind}: {result.steps} steps, {how}. Policy saved to {result.out_dir} "
               f"(use it with --model {result.out_dir}); metrics in {result.out_dir / 'metrics.jsonl'}")


def _sft(config: SFTConfig) -> None:
    from rankact.alignment.training.sft import train_sft

    _done("SFT", train_sft(config))


def _dpo(config: DPOConfig) -> None:
    from rankact.alignment.training.dpo import train_dpo

    _done("DPO", train_dpo(config))


def _grpo(config: GRPOConfig) -> None:
    from rankact.alignment.training.grpo import train_grpo

    result = train_grpo(config)
    typer.echo(f"{result.notes['samples']} trajectories with a signal from {result.notes['groups']} groups.")
    if result.notes.get("kl_budget_passed"):
        typer.echo(f"warning: KL to the reference passed --kl-budget {config.kl_budget}; see metrics.jsonl")
    _done("GRPO", result)


def _ppo(config: PPOConfig) -> None:
    from rankact.alignment.training.ppo.trainer import train_ppo

    if not config.reward.is_dir():
        raise CommandError(f"reward model folder not found: {config.reward}")
    _done("PPO", train_ppo(config))


def _rounds(config: RoundsConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.alignment.rounds import Rounds

    quiet_libraries()
    console = Console()
    records = Rounds(config, say=console.print).run()
    table = Table(title=f"rounds on {config.heldout} (held-out)")
    for column in ("round", "success [95% CI]", "p vs round 0", "tool calls", "repeated actions", "tokens", "KL"):
        table.add_column(column, justify="right")
    for r in records:
        table.add_row(str(r.round), f"{r.success:.0%} [{r.success_low:.0%}, {r.success_high:.0%}]",
                      "" if r.p_value is None else f"{r.p_value:.3g}", f"{r.tool_call_rate:.0%}",
                      f"{r.repeated_action_rate:.0%}", f"{r.mean_tokens:.0f}", "" if r.kl is None else f"{r.kl:.3f}")
    console.print(table)
    console.print(f"report: {config.out_dir / 'report.json'}, {config.out_dir / 'report.png'}; the last policy is "
                  f"{records[-1].policy} (use it with --model). Rankings: {config.ranker}"
                  + (" (SIMULATED from gold answers, not people)" if config.ranker == "simulated" else ""))


def export_adapter(
    policy: Annotated[Path, typer.Argument(help="trained policy folder (e.g. a round's policy)")],
    out: Annotated[Path, typer.Option("--out", help="adapter folder to write")],
    base: Annotated[str, typer.Option(help="the policy's base: base (the embedded model, untuned) or a folder")]
    = "base",
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank; exact when >= rounds x the rounds' LoRA rank")] = 32,
) -> None:
    """Write the policy's difference to its base as a LoRA adapter (PEFT format, SVD-factored)."""
    from rankact.agent.llm.local import resolve_model_dir
    from rankact.alignment.training.adapter_export import export_adapter as export

    report = export(resolve_model_dir(base)[0], resolve_model_dir(str(policy))[0], out, rank)
    typer.echo(f"adapter: {report.out} (rank {report.rank}, {report.layers} layers, {report.parameters:,} parameters, "
               f"{report.bytes / 1e6:.1f} MB); it keeps {report.kept_mean:.1%} of the update's norm on average "
               f"(lowest layer {report.kept_min:.1%})")


def replay(
    sources: Annotated[str, typer.Argument(help="DEV request sets, comma-separated presets: advbench:dev, nq:dev, "
                                                "hotpot:dev, arith:dev")],
    out: Annotated[Path, typer.Option("--out", help="replay file to write (JSONL), for --replay of sft, dpo, grpo")],
    model: Annotated[str, typer.Option(help="the policy whose replies are kept: the one training starts from")]
    = "base",
    limit: Annotated[int, typer.Option(min=1, help="replies kept from each set (a harmful set keeps only "
                                                   "refusals, so more of it is read)")] = 16,
    temperature: Annotated[float, typer.Option(min=0, help="sampling temperature: 1 keeps the model's "
                                                           "distribution, 0 (greedy) sharpens it")] = 1.0,
    seed: Annotated[int, typer.Option(help="request i is sampled with seed + i")] = 0,
    refusals: Annotated[str | None, typer.Option(
        help="harmful DEV request sets (advbench:dev) whose requests get a written refusal in the same file "
             "(teaches refusing: measure `rankact eval --refusal benign:dev` after)")] = None,
    refusal_limit: Annotated[int, typer.Option(min=1, help="written refusals per --refusals set")] = 32,
    data: Annotated[Path | None, typer.Option(help="evaluation data folder (default ../shared/data)")] = None,
) -> None:
    """Write a model's sampled plain replies to DEV requests, for a trainer to replay (keep) while it
    learns from rankings. Replies to harmful requests are kept only when they refuse."""
    from rankact.agent.llm import load_llm
    from rankact.agent.llm.quiet import quiet_libraries
    from rankact.alignment.feedback.demonstrations.refusal import refusal_examples, refusal_sources
    from rankact.alignment.feedback.demonstrations.replay_examples import replay_sources
    from rankact.alignment.training.replay import generate_replay, write_replay

    quiet_libraries()
    harmful = refusal_sources(refusals, data) if refusals else []
    llm = load_llm(model)
    examples = generate_replay(llm, replay_sources(sources, data), limit, temperature=temperature,
                               seed=seed, progress=True)
    if not examples:
        raise CommandError(f"{model} gave no reply worth keeping to the requests of {sources}")
    examples += [e for requests in harmful for e in refusal_examples(llm, requests, refusal_limit)]
    write_replay(out, examples)
    by_set = Counter(example.source.rsplit("-", 1)[0] + ("" if example.author == "policy" else " written refusals")
                     for example in examples)
    typer.echo(f"replay: {len(examples)} replies ({', '.join(f'{k} {v}' for k, v in by_set.items())}) "
               f"in {out}; train with --replay {out}")


def register(app: typer.Typer) -> None:
    app.command("export-adapter")(export_adapter)
    app.command("replay")(replay)
    config_command(app, "sft", SFTConfig, _sft,
                   help="Best-of-K SFT: train on each question's top-ranked trajectories (generated tokens only).")
    config_command(app, "dpo", DPOConfig, _dpo,
                   help="DPO from ranked pairs: log-ratios over generated tokens only, reference log-probs cached.")
    config_command(app, "grpo", GRPOConfig, _grpo, required=("db",),
                   help="Group-relative training from rankings: each question's K ranked trajectories get "
                        "advantages from their places; flagged steps are pushed down.")
    config_command(app, "rounds", RoundsConfig, _rounds, required=("tasks", "heldout"),
                   help="Rounds of collect -> rank -> train -> evaluate on held-out tasks; rerun to resume.")
    config_command(app, "ppo", PPOConfig, _ppo, required=("tasks", "reward"),
                   help="PPO with live tools: K rollouts per question, reward model score minus per-token KL.")
