"""`rankact demo`: does the agent learn from rankings? Rounds of the loop on the embedded
defaults, in about ten minutes on 2 cores, with the gain measured on held-out questions.

The task is arithmetic with a calculator (DEV questions of the `arith` preset). The untuned
135M model computes in its Thought, often wrongly, and hands its own result to the calculator:
exactly what ranked trajectories should train away. The stages (`rankact.alignment.rounds`, the same
code as `rankact align rounds`):

1. load the model;
2. measure the agent greedily on the held-out questions (the "before" column);
3. collect K sampled trajectories per training question into a SQLite store;
4. rank them with the SIMULATED annotator (a scoring function against the gold answers,
   stored with source=simulated: this stands in for people ranking on the web page);
5. train the policy from the rankings (best-of-K SFT by default: each question's top-ranked
   trajectories; `--method grpo` for group-relative training), LoRA, merged into a policy;
   steps 3-5 repeat for `--rounds` rounds, each collecting with the policy the last trained;
6. measure the trained agent on the same held-out questions (the "after" column) and print
   both with 95% intervals, the paired difference and the exact McNemar p-value.

Held-out questions come from positions 100+ of the DEV split, training questions from 0+, so
the two never overlap. Every stage says what it does and about how long is left; estimates
start from fixed per-unit costs and are rescaled as stages finish.
"""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from rich.console import Console

from rankact.agent.errors import RankactError
from rankact.alignment.errors import DemoError

HELDOUT_START = 100  # held-out questions: DEV positions 100.. (training ones: 0..)


class DemoConfig(BaseModel):
    # The untuned embedded model: `default` already carries rankact's arithmetic adapter, so the
    # demo would show little to learn; it shows the loop doing, live, what made that adapter.
    model: str = "base"
    out: Path | None = None  # default ./runs/demo-<timestamp>
    samples: int = Field(4, ge=2, description="trajectories per training question (K)")
    train_questions: int = Field(12, ge=1)
    heldout_questions: int = Field(24, ge=1)
    max_steps: int = Field(3, ge=1)
    temperature: float = Field(0.7, gt=0)  # at 1.0 the 135M model mostly writes noise
    # Best-of-K SFT learned fastest on this task (one round, 12x4 rollouts, 24 held-out DEV questions:
    # SFT 17% -> 33%, GRPO on process ranks 17% -> 12%); `--method grpo|dpo` for the others.
    method: Literal["grpo", "sft", "dpo"] = "sft"
    rounds: int = Field(2, ge=1, description="collect -> rank -> train rounds before the after column")
    train_steps: int = Field(12, ge=1)
    lr: float = 2e-4  # LoRA: few steps on few trajectories must move the policy visibly
    max_length: int = Field(768, ge=64)  # training tokens per trajectory (the prompt is cut first)
    seed: int = 0
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> DemoConfig:
        """Tiny sizes for a smoke test (a tiny model via `model`)."""
        values = {"samples": 2, "train_questions": 2, "heldout_questions": 2, "max_steps": 1, "rounds": 1,
                  "train_steps": 1, "max_length": 512, "quick": True}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# Seconds per unit on the embedded 135M model, 2 CPU cores; replaced by what the run measures
# (an agent run's cost after the "before" evaluation, a training step's after training).
SECONDS_PER_AGENT_RUN = 3.0  # batched: 24 greedy held-out runs took 72 s, 48 sampled ones 151 s
SECONDS_PER_TRAIN_STEP = 9.0  # LoRA SFT: 12 steps took 113 s


@dataclass
class Stage:
    name: str
    estimate: Callable[[], float]  # seconds, re-read each time so it follows the measured costs
    run: Callable[[], Any]
    optional: bool = False  # a failure is reported and the demo goes on without it


@dataclass
class DemoResult:
    out: Path
    reports: list[Any] = field(default_factory=list)
    paired: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _fmt(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Demo:
    def __init__(self, config: DemoConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = Path(config.out) if config.out else Path("runs") / f"demo-{stamp}"
        self.rounds = None
        self.result = DemoResult(out=self.out)
        scale = 0.1 if config.quick else 1.0
        self.seconds_per_run = SECONDS_PER_AGENT_RUN * scale
        self.seconds_per_step = SECONDS_PER_TRAIN_STEP * scale

    def rounds_config(self):
        from rankact.alignment.rounds_config import RoundsConfig

        c = self.config
        return RoundsConfig(
            out_dir=self.out, tasks="arith:dev", heldout="arith:dev", train_limit=c.train_questions,
            heldout_skip=HELDOUT_START, heldout_limit=c.heldout_questions, base=c.model, rounds=c.rounds,
            samples=c.samples, temperature=c.temperature, agent_max_steps=c.max_steps, ranker="simulated",
            method=c.method, train_steps=c.train_steps, learning_rate=c.lr, max_length=c.max_length, seed=c.seed)

    # --- the stages ---------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        c = self.config
        fixed = 0.2 if c.quick else 1.0  # model loads are much faster on a tiny model

        def runs(n: int) -> Callable[[], float]:
            return lambda: n * self.seconds_per_run

        stages = [
            Stage("load the model", lambda: 5 * fixed, self.load_model),
            Stage(f"evaluate the agent before training on {c.heldout_questions} held-out arithmetic questions",
                  runs(c.heldout_questions), self.eval_before),
        ]
        for r in range(1, c.rounds + 1):
            policy = "the starting policy" if r == 1 else f"round {r - 1}'s policy"
            stages += [
                Stage(f"round {r}: collect {c.samples} sampled trajectories with {policy} for each of "
                      f"{c.train_questions} training questions", runs(c.train_questions * c.samples),
                      lambda r=r: self.collect(r)),
                Stage(f"round {r}: rank them with the SIMULATED annotator (a scoring function, not people)",
                      lambda: 1, lambda r=r: self.rank(r)),
                Stage(f"round {r}: train the policy from the rankings ({c.method}, {c.train_steps} LoRA steps)",
                      lambda: c.train_steps * self.seconds_per_step + 20 * fixed, lambda r=r: self.train(r)),
            ]
        stages.append(Stage(f"evaluate the trained agent on the same {c.heldout_questions} held-out questions",
                            runs(c.heldout_questions), self.eval_after))
        return stages

    def load_model(self) -> str:
        from rankact.alignment.rounds import Rounds

        self.rounds = Rounds(self.rounds_config(), say=lambda line: self.console.print(f"  {line}"),
                             progress=True)
        llm = self.rounds.llm(self.config.model)
        info = getattr(llm, "info", None)
        return f"{getattr(info, 'name', self.config.model)}"

    def _eval(self, r: int) -> str:
        self.rounds.mark(r, "eval", self.rounds.evaluate(r))
        report = self._report(r)
        self.result.reports.append(report)
        return (f"success {report.success:.0%} [{report.intervals['success'][0]:.0%}, "
                f"{report.intervals['success'][1]:.0%}], EM {report.em:.0%}, mean steps {report.mean_steps:.1f}")

    def _report(self, r: int):
        from rankact.alignment.evaluation.evaluate import EvalReport

        report = EvalReport.model_validate_json((self.rounds.folder(r) / "eval.json").read_text())
        report.label = "before" if r == 0 else f"after {r} round{'s' if r > 1 else ''} of {self.config.method}"
        return report

    def eval_before(self) -> str:
        note = self._eval(0)
        report = self.result.reports[-1]
        if report.n:  # recalibrate the cost of an agent run from what was just measured
            self.seconds_per_run = max(0.05, report.wall_s / report.n)
        return note

    def collect(self, r: int) -> str:
        done = self.rounds.collect(r)
        self.rounds.mark(r, "collect", done)
        if done["trajectories"] < 2:
            raise DemoError(f"collection stored {done['trajectories']} trajectories ({done['failed']} runs failed); "
                            "nothing to rank")
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(done["by_status"].items()))
        return f"{done['trajectories']} trajectories ({statuses}) in {self.rounds.folder(r) / 'store.db'}"

    def rank(self, r: int) -> str:
        ranked = self.rounds.rank(r)
        self.rounds.mark(r, "rank", ranked)
        return f"{ranked['rankings']} rankings (source=simulated); {ranked['all_tied']} with every trajectory tied"

    def train(self, r: int) -> str:
        trained = self.rounds.train_policy(r)
        self.rounds.mark(r, "train", trained)
        if trained.get("skipped"):
            if r == 1:
                raise DemoError(f"nothing to learn: {trained['skipped']}; try more samples (--samples) or another seed")
            return f"nothing new to learn this round ({trained['skipped']}); the policy stays as it was"
        if trained.get("steps"):
            self.seconds_per_step = max(0.05, trained["seconds"] / trained["steps"])
        kl = f", KL to the round's starting policy {trained['kl']:.3f}/token" if trained.get("kl") is not None else ""
        return f"{trained['steps']} steps{kl} -> policy {self.rounds.policy(r)}"

    def eval_after(self) -> str:
        return self._eval(self.config.rounds)

    # --- running ------------------------------------------------------------------------

    def run(self) -> DemoResult:
        from rankact.agent.llm.quiet import quiet_libraries

        console = self.console
        quiet_libraries()
        self.out.mkdir(parents=True, exist_ok=True)
        stages = self.stages()

        def left(i: int) -> float:
            return sum(s.estimate() for s in stages[i:])

        start = time.perf_counter()
        c = self.config
        console.rule("[bold]rankact demo")
        console.print(f"run folder: {self.out}   model: {c.model}   arithmetic with a calculator: "
                      f"{c.train_questions} training questions x {c.samples} samples, "
                      f"{c.heldout_questions} held-out questions; about {_fmt(left(0))} in all")
        for i, stage in enumerate(stages):
            console.print(f"\n[bold cyan][{i + 1}/{len(stages)}][/] {stage.name}  "
                          f"[dim](about {_fmt(stage.estimate())}; {_fmt(left(i))} left in all)[/]")
            t0 = time.perf_counter()
            try:
                note = stage.run()
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                seconds = time.perf_counter() - t0
                message = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, RankactError) else str(exc)
                if not isinstance(exc, RankactError):  # not the user's doing: keep the traceback
                    log = self.out / "error.txt"
                    log.write_text("".join(traceback.format_exception(exc)))
                    message += f" (traceback in {log})"
                if not stage.optional:
                    raise DemoError(f"stage {i + 1} ({stage.name}) failed after {_fmt(seconds)}: {message}") from exc
                console.print(f"  [yellow]skipped:[/] {message}")
                self.result.skipped[stage.name] = message
                note = None
            seconds = time.perf_counter() - t0
            self.result.stages[stage.name] = seconds
            console.print(f"  [green]done[/] in {_fmt(seconds)}" + (f": {note}" if note else ""))
        self.result.seconds = time.perf_counter() - start
        self._summary()
        return self.result

    def _summary(self) -> None:
        from rankact.alignment.evaluation.evaluate import comparison_table, paired_differences, paired_table

        console = self.console
        reports = self.result.reports
        console.rule("[bold]before and after")
        console.print(comparison_table(reports, title=f"{self.config.heldout_questions} held-out arithmetic "
                                                      "questions (DEV), greedy"))
        paired = paired_differences(reports)
        console.print(paired_table(paired))
        success = next(d for d in paired if d.metric == "success")
        verdict = "a significant gain" if success.p_value < 0.05 and success.difference > 0 else (
            "not significant at this size" if success.difference >= 0 else "a loss")
        console.print(f"success {success.difference:+.0%} (95% CI {success.low:+.0%} to {success.high:+.0%}), "
                      f"exact McNemar p = {success.p_value:.3g}: {verdict}.")
        console.print("rankings came from the SIMULATED annotator (gold-answer scoring), not from people; "
                      f"with `rankact serve --db {self.rounds.store_url(self.config.rounds)}` people rank a store on a "
                      "web page, and `rankact align rounds --ranker people` trains on theirs.", style="yellow")
        console.print(f"everything is in {self.out} (round-N/: store.db, policy/, eval.json); "
                      f"total {_fmt(self.result.seconds)}")
        self.result.paired = [d.model_dump() for d in paired]
        (self.out / "demo_summary.json").write_text(json.dumps({
            "reports": [r.model_dump(mode="json") for r in reports], "paired": self.result.paired,
            "stages": self.result.stages, "skipped": self.result.skipped, "seconds": self.result.seconds,
            "config": json.loads(self.config.model_dump_json()),
        }, indent=1))


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoResult:
    return Demo(config, console).run()
