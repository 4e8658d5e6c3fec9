"""`rankact demo`: the whole loop on the embedded defaults, in about ten minutes on 2 cores.

1. load the model and index the bundled corpus (a dozen short passages about a fictional
   island, so the model cannot answer from memory and has to search); lookup questions
   give the agent the search tool, arithmetic ones the calculator (`metadata.tools`);
2. measure the agent on held-out demo questions (the "before" column);
3. collect K sampled trajectories per training question into a SQLite store;
4. rank them with the SIMULATED annotator (a scoring function against the gold answers,
   stored with source=simulated: this stands in for people ranking on the web page);
5. export the rankings as preference pairs;
6. train a small reward model on the pairs (LoRA, a few steps) and report its accuracy;
7. run a few DPO steps on the pairs (LoRA) and merge them into a policy folder;
8. measure the aligned agent on the same held-out questions (the "after" column) and
   print both in one table.

Every stage says what it does and about how long is left. Estimates start from fixed
per-unit costs of the embedded model on 2 cores and are rescaled as stages finish.
"""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console

from agent.errors import RankactError
from alignment.errors import DemoError
from alignment.tasks.bundled import demo_corpus, demo_tasks


class DemoConfig(BaseModel):
    model: str = "default"
    out: Path | None = None  # default ./runs/demo-<timestamp>
    # Sized for about ten minutes on 2 cores: measured 5m40s wall (338 CPU-seconds) for these
    # defaults on two mostly free cores, so a slower laptop still fits.
    samples: int = Field(4, ge=2, description="trajectories per training question (K)")
    train_questions: int = Field(6, ge=1)
    heldout_questions: int = Field(6, ge=1)
    # Two steps, then the agent's forced-answer call: every run ends with an answer to rank
    # (a 135M model otherwise often repeats one action until the loop guard stops it, and
    # answerless runs all tie, leaving no pairs).
    max_steps: int = Field(2, ge=1)
    temperature: float = Field(0.7, gt=0)  # at 1.0 the 135M model mostly writes noise
    reward_steps: int = Field(4, ge=1)
    dpo_steps: int = Field(6, ge=1)
    dpo_beta: float = 0.1
    lr: float = 2e-4  # LoRA: few steps on few pairs must move the policy visibly
    max_length: int = Field(640, ge=64)  # training tokens per trajectory (the prompt is cut first)
    seed: int = 0
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> DemoConfig:
        """Tiny sizes for a smoke test (a tiny model via `model`)."""
        values = {"samples": 2, "train_questions": 2, "heldout_questions": 2, "max_steps": 2,
                  "reward_steps": 1, "dpo_steps": 1, "max_length": 384, "quick": True}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# Seconds per unit on the embedded 135M model, 2 CPU cores; replaced by what the run measures
# (an agent run's cost after the "before" evaluation, a training step's after the reward model).
SECONDS_PER_AGENT_RUN = 6.0
SECONDS_PER_TRAIN_STEP = 12.0


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
    reward_accuracy: float | None = None
    reward_scores: dict[str, float | None] = field(default_factory=dict)
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
        train, heldout = demo_tasks()
        self.train = train[: config.train_questions]
        self.heldout = heldout[: config.heldout_questions]
        self.state: dict[str, Any] = {}
        self.result = DemoResult(out=self.out)
        scale = 0.1 if config.quick else 1.0
        self.seconds_per_run = SECONDS_PER_AGENT_RUN * scale
        self.seconds_per_step = SECONDS_PER_TRAIN_STEP * scale

    # --- the stages ---------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        c = self.config
        runs_eval = len(self.heldout)
        runs_collect = len(self.train) * c.samples
        fixed = 0.2 if c.quick else 1.0  # model loads and indexing are much faster on a tiny model

        def runs(n: int) -> Callable[[], float]:
            return lambda: n * self.seconds_per_run

        def steps(n: int, factor: float, overhead: float) -> Callable[[], float]:
            return lambda: n * factor * self.seconds_per_step + overhead * fixed

        return [
            Stage("load the model", lambda: 5 * fixed, self.load_model),
            Stage("index the bundled corpus", lambda: 10 * fixed, self.index_corpus),
            Stage(f"evaluate the agent before alignment on {runs_eval} held-out questions",
                  runs(runs_eval), self.eval_before),
            Stage(f"collect {c.samples} sampled trajectories for each of {len(self.train)} training questions",
                  runs(runs_collect), self.collect),
            Stage("rank them with the SIMULATED annotator (a scoring function, not people)", lambda: 1,
                  self.rank),
            Stage("export the rankings as preference pairs", lambda: 1, self.export),
            Stage(f"train a reward model on the pairs ({c.reward_steps} LoRA steps)",
                  steps(c.reward_steps, 1.0, 15), self.train_reward, optional=True),
            Stage(f"align the policy with DPO ({c.dpo_steps} LoRA steps, beta {c.dpo_beta})",
                  steps(c.dpo_steps, 1.5, 20), self.train_dpo),
            Stage(f"evaluate the aligned agent on the same {runs_eval} held-out questions",
                  runs(runs_eval), self.eval_after),
        ]

    def load_model(self) -> str:
        from agent.llm import load_llm

        self.state["llm"] = load_llm(self.config.model)
        info = getattr(self.state["llm"], "info", None)
        return f"{getattr(info, 'name', self.config.model)}"

    def index_corpus(self) -> str:
        from agent.build import load_index
        from alignment.tasks.indexes import build_index

        records = demo_corpus()
        folder = build_index(records, self.out / "index", progress=False)
        self.state["retriever"] = load_index(folder)
        return f"{len(records)} passages -> {folder}"

    def _agents(self, llm: Any) -> Any:
        from alignment.tasks.agents import TaskAgents

        return TaskAgents(llm, retriever=self.state.get("retriever"), max_steps=self.config.max_steps)

    def _evaluate(self, llm: Any, label: str) -> Any:
        from alignment.evaluation.evaluate import evaluate

        runs = self.state.setdefault("runs", {}).setdefault(label, [])
        return evaluate(self._agents(llm), self.heldout, label=label,
                        on_result=lambda _result, trajectory: runs.append(trajectory))

    def _reward_of(self, label: str) -> float | None:
        """Mean normalized reward-model score of one evaluation's trajectories: the learned
        proxy's view of before vs after, beside the gold-answer metrics."""
        model = self.state.get("reward_model")
        runs = [t for t in self.state.get("runs", {}).get(label, []) if t is not None]
        if model is None or not runs:
            return None
        return sum(float(model.normalized(model.score_trajectory(t))) for t in runs) / len(runs)

    def eval_before(self) -> str:
        report = self._evaluate(self.state["llm"], "before")
        (self.out / "eval-before.json").write_text(report.model_dump_json(indent=1))
        self.result.reports.append(report)
        if report.n:  # recalibrate the cost of an agent run from what was just measured
            self.seconds_per_run = max(0.05, report.wall_s / report.n)
        return f"EM {report.em:.0%}, success {report.success:.0%}, mean steps {report.mean_steps:.1f}"

    def collect(self) -> str:
        from alignment.feedback.collect import collect
        from alignment.feedback.store import TrajectoryStore

        self.out.mkdir(parents=True, exist_ok=True)
        store = TrajectoryStore(f"sqlite:///{(self.out / 'store.db').resolve()}")
        self.state["store"] = store
        total = len(self.train) * self.config.samples
        with _progress_bar("collecting", total) as (bar, job):
            report = collect(self.train, self._agents(self.state["llm"]), store, samples=self.config.samples,
                             temperature=self.config.temperature, seed=self.config.seed,
                             on_sample=lambda *_: bar.advance(job))
        failed, by_status = report.failed, report.by_status
        count = store.count_trajectories()
        if count < 2:
            raise DemoError(f"collection stored {count} trajectories ({failed} runs failed); nothing to rank")
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()))
        return f"{count} trajectories ({statuses}) in {self.out / 'store.db'}"

    def rank(self) -> str:
        from alignment.feedback.simulated import SimulatedAnnotator

        rankings = SimulatedAnnotator("simulated-demo").annotate_all(self.state["store"])
        ties = sum(1 for r in rankings if len(r.order) == 1)
        return f"{len(rankings)} rankings (source=simulated); {ties} with every trajectory tied"

    def export(self) -> str:
        from alignment.feedback.export import write_export

        path = self.out / "pairs.jsonl"
        count = write_export(self.state["store"], "pairs", path)
        self.state["pairs_path"] = path
        if count == 0:
            raise DemoError(
                "the simulated annotator tied every trajectory (all equally right or wrong), so there are "
                "no preference pairs; try more samples (--samples) or another seed")
        return f"{count} pairs -> {path}"

    def _pairs(self) -> list[Any]:
        from alignment.feedback.pairs import read_pairs

        if "pairs" not in self.state:
            self.state["pairs"] = read_pairs(self.state["pairs_path"])
        return self.state["pairs"]

    def _base_dir(self) -> str:
        from agent.llm.local import resolve_model_dir

        return str(resolve_model_dir(self.config.model)[0])

    def train_reward(self) -> str:
        from alignment.training.reward.config import RewardTrainConfig
        from alignment.training.reward.train import train_reward

        c = self.config
        config = RewardTrainConfig(
            base=self._base_dir(), out_dir=self.out / "reward", lora=RewardTrainConfig.DEFAULT_LORA,
            max_steps=c.reward_steps, batch_size=1, learning_rate=max(c.lr, 1e-4), max_length=c.max_length,
            seed=c.seed, save_every=10_000, norm_samples=8,
        )
        model, result = train_reward(config, self._pairs(), log=lambda *_: None)
        if result.steps:
            self.seconds_per_step = max(0.05, result.seconds / result.steps)
        loss, accuracy = result.final_metrics["loss"], result.final_metrics["accuracy"]
        self.result.reward_accuracy = accuracy
        self.state["reward_model"] = model
        return (f"{result.steps} steps, loss {loss:.3f}, running accuracy {accuracy:.0%} on training pairs "
                f"-> {config.out_dir}")

    def train_dpo(self) -> str:
        from alignment.training.dpo import DPOConfig, train_dpo
        from alignment.training.policy import LoraSettings

        c = self.config
        config = DPOConfig(
            out_dir=self.out / "dpo", base=self._base_dir(), lora=LoraSettings(), max_steps=c.dpo_steps,
            beta=c.dpo_beta, learning_rate=c.lr, batch_size=1, max_length=c.max_length, seed=c.seed,
        )
        result = train_dpo(config, self._pairs())
        self.state["policy_dir"] = result.out_dir
        metrics = result.final_metrics
        extra = f", loss {metrics['loss']:.3f}, pair accuracy {metrics['accuracy']:.0%}" if metrics else ""
        return f"{result.steps} steps{extra} -> policy {result.out_dir}"

    def eval_after(self) -> str:
        from agent.llm import load_llm

        self.state.pop("llm", None)
        llm = load_llm(str(self.state["policy_dir"]))
        report = self._evaluate(llm, "after DPO")
        (self.out / "eval-after.json").write_text(report.model_dump_json(indent=1))
        self.result.reports.append(report)
        try:
            self.result.reward_scores = {label: self._reward_of(label) for label in ("before", "after DPO")}
        except Exception as exc:  # noqa: BLE001 - an extra figure; its failure must not lose the table
            self.console.print(f"  [yellow]reward-model scoring skipped:[/] {exc}")
        return f"EM {report.em:.0%}, success {report.success:.0%}, mean steps {report.mean_steps:.1f}"

    # --- running ------------------------------------------------------------------------

    def run(self) -> DemoResult:
        from alignment.cli.quiet import quiet_libraries

        console = self.console
        quiet_libraries()
        self.out.mkdir(parents=True, exist_ok=True)
        stages = self.stages()

        def left(i: int) -> float:
            return sum(s.estimate() for s in stages[i:])

        start = time.perf_counter()
        console.rule("[bold]rankact demo")
        console.print(f"run folder: {self.out}   model: {self.config.model}   "
                      f"{len(self.train)} training questions x {self.config.samples} samples, "
                      f"{len(self.heldout)} held-out questions; about {_fmt(left(0))} in all")
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
        from alignment.evaluation.evaluate import comparison_table

        console = self.console
        console.rule("[bold]before and after")
        console.print(comparison_table(self.result.reports, title=f"{len(self.heldout)} held-out demo questions"))
        if self.result.reward_accuracy is not None:
            console.print(f"reward model: running accuracy {self.result.reward_accuracy:.0%} on its training pairs")
        scores = self.result.reward_scores
        if scores and all(v is not None for v in scores.values()):
            console.print("reward model's mean normalized score of the held-out runs: " + ", ".join(
                f"{label} {value:+.2f}" for label, value in scores.items()))
        console.print("rankings came from the SIMULATED annotator (gold-answer scoring), not from people; "
                      "with `rankact serve` people rank the same store on a web page.", style="yellow")
        console.print(f"everything is in {self.out} (store.db, pairs.jsonl, reward/, dpo/); "
                      f"total {_fmt(self.result.seconds)}")
        (self.out / "demo_summary.json").write_text(json.dumps({
            "reports": [r.model_dump(mode="json") for r in self.result.reports],
            "reward_accuracy": self.result.reward_accuracy, "reward_scores": self.result.reward_scores,
            "stages": self.result.stages,
            "skipped": self.result.skipped, "seconds": self.result.seconds,
            "config": json.loads(self.config.model_dump_json()),
        }, indent=1))


@contextmanager
def _progress_bar(label: str, total: int):
    from alignment.evaluation.evaluate import _progress

    with _progress(True, label) as bar:
        yield bar, bar.add_task(label, total=total)


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoResult:
    return Demo(config, console).run()
