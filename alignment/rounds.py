"""Rounds of collect -> rank -> train -> evaluate: the loop that makes the agent better.

    rankact align rounds --tasks arith:dev --heldout arith:dev --train-limit 24 --heldout-limit 40 --out runs/r

Round 0 measures the starting policy on the held-out tasks. Each round r >= 1 then:

1. collects K sampled trajectories per training task with the current policy (`round-r/store.db`),
   plus the written demonstrations of training questions, if any (`demonstrations`: for a path
   the policy never samples, ranking alone has nothing to prefer);
   `lookup` sets (nq:dev, hotpot:dev) are taught from gold-answer lookup demonstrations alone,
   written and recorded once in round 0 and trained on by every round's SFT beside the ranked
   samples: the untuned model never answers a lookup question right, so sampling them would
   give ranking nothing to push up, at the cost of the slowest rollouts;
2. ranks them: the SIMULATED annotator (gold answers), a reward model, or people (the round
   waits until every question of the round is ranked in its store: `rankact serve --db ...`);
3. trains the next policy from the rankings: best-of-K SFT (the default), group-relative
   (`grpo`) or DPO, with LoRA merged into `round-r/policy`;
4. evaluates it greedily on the same held-out tasks.

Every stage writes its result before the next starts (`round-r/stages.json`), so a rerun of the
same command resumes where the last one stopped: a finished stage is skipped, collection
completes missing samples only, training resumes from its checkpoint. The report
(`report.json`, `report.png`) has per round: held-out success with its 95% interval and the
exact McNemar p against round 0, the tool-call rate, the repeated-action rate, mean generated
tokens, and the KL to the round's reference. Monitors warn when KL passes its budget or the
tool-call rate collapses (a small model's known failure: it stops calling tools), and can stop.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rankact.agent.errors import RankactError
from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import NoTrainingSignal
from rankact.alignment.rounds_config import RoundsConfig
from rankact.alignment.rounds_report import RoundRecord, behaviour, plot_rounds, summary_line
from rankact.alignment.tasks.datasets import preset_specs

__all__ = ["RoundRecord", "Rounds", "RoundsConfig", "behaviour"]

class Rounds:
    """The loop over a run folder; `run()` resumes whatever the folder already holds."""

    def __init__(self, config: RoundsConfig, *, say: Callable[[str], None] = print,
                 load_llm: Callable[[str], Any] | None = None, progress: bool = False):
        from rankact.alignment.tasks.indexes import tasks_and_index

        self.config = config
        self.say = say
        self.out = config.out_dir
        self.out.mkdir(parents=True, exist_ok=True)
        c = config
        self.train, train_index = tasks_and_index(c.tasks, c.data, limit=c.train_limit, progress=False)
        heldout, heldout_index = tasks_and_index(c.heldout, c.data, limit=None, progress=False)
        end = c.heldout_skip + c.heldout_limit if c.heldout_limit else None
        self.heldout = heldout[c.heldout_skip : end]
        if not self.train or not self.heldout:
            raise RankactError(f"no tasks: {len(self.train)} training and {len(self.heldout)} held-out")
        overlap = {t.question for t in self.train} & {t.question for t in self.heldout}
        if overlap:
            raise RankactError(f"{len(overlap)} held-out questions are also training questions; "
                               "use --heldout-skip to keep them apart")
        self.heldout_ood: list = []
        ood_index = None
        if c.heldout_ood:
            self.heldout_ood, ood_index = tasks_and_index(c.heldout_ood, c.data, limit=c.heldout_ood_limit,
                                                          progress=False)
            if {t.question for t in self.train} & {t.question for t in self.heldout_ood}:
                raise RankactError("--heldout-ood shares questions with the training tasks: it would not be "
                                   "out of distribution")
        self.index = c.index or train_index or heldout_index or ood_index
        self.demonstrations = []  # (demonstration, its training task)
        if c.demonstrations is not None:
            from rankact.alignment.feedback.demonstrations.recording import match_tasks, read_demonstrations

            self.demonstrations = match_tasks(read_demonstrations(c.demonstrations), self.train)
        self._load_llm = load_llm
        self._loaded: tuple[str, Any] | None = None  # the last model loaded (one in memory at a time)
        self._retriever = None
        self._served = None  # ServedPolicy, with --served-policy
        self.progress = progress

    # ---- bookkeeping ----------------------------------------------------------------
    def folder(self, r: int) -> Path:
        path = self.out / f"round-{r}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stages(self, r: int) -> dict[str, Any]:
        path = self.folder(r) / "stages.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def mark(self, r: int, stage: str, value: Any) -> None:
        done = self.stages(r)
        done[stage] = value
        path = self.folder(r) / "stages.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(done, indent=1))
        partial.replace(path)

    def policy(self, r: int) -> str:
        """The policy round r ends with (a round that had nothing to learn keeps the one before)."""
        if r == 0:
            return self.config.base
        if self.stages(r).get("train", {}).get("skipped"):
            return self.policy(r - 1)
        return str(self.folder(r) / "policy")

    def store_url(self, r: int) -> str:
        return f"sqlite:///{(self.folder(r) / 'store.db').resolve()}"

    # ---- pieces ---------------------------------------------------------------------
    def llm(self, spec: str):
        if self._loaded is not None and self._loaded[0] == spec:
            return self._loaded[1]
        self._loaded = None  # drop the old model before loading the next
        if self.config.served_policy:
            llm = self._served_llm(spec)
        elif self._load_llm is not None:
            llm = self._load_llm(spec)
        else:
            from rankact.agent.llm import load_llm

            llm = load_llm(spec)
        self._loaded = (spec, llm)
        return llm

    def _served_llm(self, spec: str):
        """The vLLM backend naming `spec`: the base, or a round's policy pushed as an adapter."""
        from rankact.alignment.training.lora_publisher import ServedPolicy
        from rankact.alignment.training.policy import LoraSettings

        if self._served is None:
            from rankact.agent.llm.token_io import load_tokenizer

            self._served = ServedPolicy(self.config.served_policy, load_tokenizer(self.config.base),
                                        self.out / "served-adapters", LoraSettings().r)
        round_index = 0 if spec == self.config.base else int(Path(spec).parent.name.removeprefix("round-"))
        return self._served.serve(Path(self._base_folder(0)), spec, round_index)

    def agents(self, llm):
        from rankact.agent.build import load_index
        from rankact.alignment.tasks.agents import TaskAgents

        if self._retriever is None and self.index is not None:
            self._retriever = load_index(self.index)
        return TaskAgents(llm, retriever=self._retriever, max_steps=self.config.agent_max_steps)

    def evaluate(self, r: int) -> dict[str, Any]:
        """The round's policy on the held-out tasks (and the out-of-distribution ones, if any):
        success, behaviour and what its thoughts look like (the collapse monitors)."""
        from rankact.alignment.evaluation.collapse import (
            distinct_thought_ratio,
            template_spread,
            thought_token_entropy,
        )

        llm = self.llm(self.policy(r))
        report, runs = self._evaluate_on(llm, self.heldout, r, "eval.json")
        tool_rate, repeat_rate = behaviour(runs)
        out: dict[str, Any] = {
            "success": report.success, "interval": list(report.intervals["success"]), "em": report.em,
            "mean_tokens": report.mean_tokens, "tool_call_rate": tool_rate, "repeated_action_rate": repeat_rate,
            "wall_s": report.wall_s}
        results, tasks = list(report.results), list(self.heldout)
        if self.heldout_ood:
            ood, ood_runs = self._evaluate_on(llm, self.heldout_ood, r, "eval-ood.json")
            runs += ood_runs
            results += ood.results
            tasks += self.heldout_ood
            out.update(success_ood=ood.success, interval_ood=list(ood.intervals["success"]))
        spread = template_spread([x.success for x in results], [t.metadata.get("template") for t in tasks])
        out.update(distinct_thought_ratio=distinct_thought_ratio(runs), thought_entropy=thought_token_entropy(runs),
                   template_spread=spread.spread if spread.by_group else None)
        return out

    def _evaluate_on(self, llm, tasks: list, r: int, name: str):
        from rankact.alignment.evaluation.evaluate import evaluate

        runs: list[Trajectory] = []
        report = evaluate(self.agents(llm), tasks, label=f"round {r}", batch_size=self.config.batch_size,
                          progress=self.progress,
                          on_result=lambda _result, trajectory: runs.append(trajectory) if trajectory else None)
        (self.folder(r) / name).write_text(report.model_dump_json(indent=1))
        return report, runs

    def collect(self, r: int) -> dict[str, Any]:
        from rankact.alignment.evaluation.evaluate import progress_bar
        from rankact.alignment.feedback.collection.collect import collect
        from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

        c = self.config
        with TrajectoryStore(self.store_url(r)) as store, progress_bar(self.progress, "collecting") as bar:
            job = bar.add_task("collecting", total=len(self.train) * c.samples)
            agents = self.agents(self.llm(self.policy(r - 1)))
            report = collect(self.train, agents, store, samples=c.samples,
                             temperature=c.temperature, seed=c.seed + 1000 * r, batch_size=c.batch_size,
                             on_sample=lambda *_: bar.advance(job))
            report.raise_if_incomplete()  # an outage: the stage is not done, and a rerun fills the gaps
            done: dict[str, Any] = {}
            if self.demonstrations:
                from rankact.alignment.feedback.demonstrations.recording import add_demonstrations

                add_demonstrations(store, self.demonstrations, agents)
                done["demonstrations"] = len(self.demonstrations)
            return {"trajectories": store.count_trajectories(), "failed": report.failed, "by_status": report.by_status,
                    **done}

    def rank(self, r: int) -> dict[str, Any] | None:
        """Rank the round's store; None while people have not ranked every question yet."""
        from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

        c = self.config
        with TrajectoryStore(self.store_url(r)) as store:
            if c.ranker == "simulated":
                from rankact.alignment.feedback.collection.simulated import SimulatedAnnotator

                rankings = SimulatedAnnotator(f"simulated-{c.simulated_criteria}", c.simulated_criteria).annotate_all(store)
                return {"rankings": len(store.rankings()), "new": len(rankings), "source": "simulated",
                        "all_tied": sum(1 for x in rankings if len(x.order) == 1)}
            if c.ranker == "reward":
                return {"rankings": len(_rank_with_reward_model(store, c.reward_model)), "source": "reward model"}
            deadline = time.monotonic() + 60 * c.wait_minutes
            while True:
                ranked = {x.question_id for x in store.rankings(source="human")}
                missing = [q for q in store.questions() if q.trajectories >= 2 and q.id not in ranked]
                if not missing:
                    return {"rankings": len(store.rankings(source="human")), "source": "people"}
                if time.monotonic() >= deadline:
                    self.say(f"round {r} waits for people: {len(missing)} questions are not ranked yet. Serve the "
                             f"store with `rankact serve --db {self.store_url(r)}`, rank, then rerun this "
                             "command to continue.")
                    return None
                time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))

    def train_policy(self, r: int) -> dict[str, Any]:
        from rankact.alignment.training.checkpoint import has_checkpoint
        from rankact.alignment.training.policy import LoraSettings

        c = self.config
        out = self.folder(r) / "policy"
        # What the round sets itself (`rounds_config.SET_BY_ROUNDS`); the rest is c.trainer_settings().
        per_round = {"out_dir": out, "base": self._base_folder(r - 1), "lora": LoraSettings(), "seed": c.seed + r,
                     "resume": has_checkpoint(out), "show_progress": False, "db": self.store_url(r)}
        if c.replay or c.refusals:
            per_round.update(replay=self.replay_file(), replay_coef=c.replay_coef)
        started = time.perf_counter()
        try:
            result = self._train(c.trainer_config(**per_round))
        except NoTrainingSignal as exc:
            self.say(f"round {r}: nothing to learn ({exc}); the policy stays as it was")
            return {"skipped": str(exc), "seconds": round(time.perf_counter() - started, 1)}
        return {"steps": result.steps, "seconds": round(time.perf_counter() - started, 1),
                "kl": self.measured_kl(r), "loss": result.final_metrics.get("loss")}

    def replay_file(self) -> Path:
        return self.out / "replay.jsonl"

    def make_replay(self) -> dict[str, Any]:
        """The starting policy's sampled replies to the --replay requests, once per run: every round
        replays the same text, so each round pulls toward the start, not toward the last round.
        The written refusals of the --refusals requests join them in the same file."""
        from rankact.alignment.feedback.demonstrations.refusal import refusal_examples, refusal_sources
        from rankact.alignment.feedback.demonstrations.replay_examples import replay_sources
        from rankact.alignment.training.replay import generate_replay, write_replay

        c = self.config
        llm = self.llm(self.policy(0))
        examples = []
        if c.replay:
            examples = generate_replay(llm, replay_sources(c.replay, c.data), c.replay_limit, seed=c.seed,
                                       batch_size=c.batch_size, progress=self.progress)
            if not examples:
                raise RankactError(f"replay: {c.base} gave no reply worth keeping to the requests of {c.replay}")
        written = [e for requests in (refusal_sources(c.refusals, c.data) if c.refusals else [])
                   for e in refusal_examples(llm, requests, c.refusal_limit)]
        write_replay(self.replay_file(), examples + written)
        return {"examples": len(examples), "written_refusals": len(written), "file": str(self.replay_file())}

    def lookup_file(self) -> Path:
        return self.out / "lookup-trajectories.jsonl"

    def make_lookup(self) -> dict[str, Any]:
        """The --lookup sets' demonstrations, written beside the run (`lookup-<set>.jsonl`) and
        recorded once with the starting policy's prompt and tokenizer: every round trains on the
        same trajectories."""
        from rankact.alignment.feedback.demonstrations.lookup import demonstrate_preset
        from rankact.alignment.feedback.demonstrations.recording import write_demonstrations
        from rankact.alignment.output_file import write_lines

        c = self.config
        heldout = {t.question for t in self.heldout}
        written, recorded = {}, []
        for spec in preset_specs(c.lookup):
            demonstrations, trajectories = demonstrate_preset(spec, self.llm(self.policy(0)), data=c.data,
                                                              limit=c.lookup_limit, max_steps=c.agent_max_steps)
            shared = heldout & {d.question for d in demonstrations}
            if shared:
                raise RankactError(f"{len(shared)} held-out questions are also --lookup questions (e.g. "
                                   f"{next(iter(shared))!r}): hold out other questions")
            write_demonstrations(demonstrations, self.out / f"lookup-{spec.replace(':', '-')}.jsonl")
            written[spec] = len(demonstrations)
            recorded += trajectories
        write_lines(self.lookup_file(), (t.model_dump_json() for t in recorded))
        return {"demonstrations": written, "file": str(self.lookup_file())}

    def lookup_trajectories(self) -> list[Trajectory]:
        if not self.config.lookup:
            return []
        lines = self.lookup_file().read_text(encoding="utf-8").splitlines()
        return [Trajectory.model_validate_json(line) for line in lines if line.strip()]

    def measured_kl(self, r: int, limit: int = 16) -> float:
        """How far round r moved the policy, the same way for every trainer: the mean per-token
        KL(start || trained) over the generated tokens of (up to `limit` of) the round's own
        rollouts, which were sampled from the starting policy (k3 estimator)."""
        import torch

        from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
        from rankact.alignment.training.kl import kl_k3
        from rankact.alignment.training.logprobs import DEFAULT_CHUNK_SIZE
        from rankact.alignment.training.policy import load_policy
        from rankact.alignment.training.reference import sample_token_logps
        from rankact.alignment.training.tokenize import encode_trajectory, pad_token_id

        with TrajectoryStore(self.store_url(r), create=False) as store:
            trajectories = [t for q in store.questions() for t in store.list(q.id)][:limit]
        trained, tokenizer = load_policy(str(self.folder(r) / "policy"))
        start, _ = load_policy(self._base_folder(r - 1))
        max_length = self.config.trainer_settings()["max_length"]
        samples = [s for s in (encode_trajectory(t, tokenizer, max_length) for t in trajectories)
                   if s.n_trainable]
        pad_id = pad_token_id(tokenizer)
        new = sample_token_logps(trained, samples, pad_id, "cpu", DEFAULT_CHUNK_SIZE, batch_size=4)
        old = sample_token_logps(start, samples, pad_id, "cpu", DEFAULT_CHUNK_SIZE, batch_size=4)
        total = count = 0.0
        for sample, new_logp, old_logp in zip(samples, new, old, strict=True):
            mask = torch.tensor(sample.trainable, dtype=torch.float32)
            total += float((kl_k3(old_logp, new_logp) * mask).sum())  # samples from the start: KL(start || trained)
            count += float(mask.sum())
        return total / count if count else 0.0

    def _train(self, config):
        if self.config.method == "grpo":
            from rankact.alignment.training.grpo import train_grpo

            return train_grpo(config)
        if self.config.method == "sft":
            from rankact.alignment.training.sft import train_sft

            return train_sft(config, extra=self.lookup_trajectories())
        from rankact.alignment.training.dpo import train_dpo

        return train_dpo(config)

    def _base_folder(self, r: int) -> str:
        if r > 0:
            return self.policy(r)
        from rankact.agent.llm.local import resolve_model_dir

        return str(resolve_model_dir(self.config.base)[0])

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> list[RoundRecord]:
        c = self.config
        if not self.stages(0).get("eval"):
            self.say(f"round 0: evaluating {c.base} on {len(self.heldout)} held-out tasks")
            self.mark(0, "eval", self.evaluate(0))
        if (c.replay or c.refusals) and not (self.stages(0).get("replay") and self.replay_file().is_file()):
            if c.replay:
                self.say(f"replay: {c.base}'s sampled plain replies to requests from {c.replay}, "
                         f"up to {c.replay_limit} each")
            if c.refusals:
                self.say(f"refusals: written refusals of {c.refusals} requests, up to {c.refusal_limit} each")
            self.mark(0, "replay", self.make_replay())
        if c.lookup and not (self.stages(0).get("lookup") and self.lookup_file().is_file()):
            self.say(f"lookup: gold-answer demonstrations of {c.lookup}, up to {c.lookup_limit} each")
            self.mark(0, "lookup", self.make_lookup())
        records = [self.record(0)]
        self.say(summary_line(records[0]))
        for r in range(1, c.rounds + 1):
            done = self.stages(r)
            if "collect" not in done:
                self.say(f"round {r}: collecting {c.samples} trajectories for each of {len(self.train)} tasks")
                self.mark(r, "collect", self.collect(r))
            if "rank" not in done:
                ranked = self.rank(r)
                if ranked is None:
                    break
                self.mark(r, "rank", ranked)
            if "train" not in done:
                self.say(f"round {r}: training ({c.method}, {c.trainer_settings()['max_steps']} steps)")
                self.mark(r, "train", self.train_policy(r))
            if "eval" not in done:
                self.say(f"round {r}: evaluating on {len(self.heldout)} held-out tasks")
                self.mark(r, "eval", self.evaluate(r))
            record = self.record(r, base=records[0], previous=records[-1])
            records.append(record)
            self.say(summary_line(record))
            for warning in record.warnings:
                self.say(f"warning: {warning}")
            if record.warnings and c.stop_on_collapse:
                self.say("stopping: a monitor warned (--stop-on-collapse)")
                break
        self.report(records)
        return records

    def record(self, r: int, base: RoundRecord | None = None, previous: RoundRecord | None = None) -> RoundRecord:
        from rankact.alignment.evaluation.collapse import collapse_warnings

        stages = self.stages(r)
        ev, train = stages["eval"], stages.get("train", {})
        low_ood, high_ood = ev.get("interval_ood") or (None, None)
        record = RoundRecord(round=r, policy=self.policy(r), success=ev["success"], success_low=ev["interval"][0],
                             success_high=ev["interval"][1], em=ev["em"], tool_call_rate=ev["tool_call_rate"],
                             repeated_action_rate=ev["repeated_action_rate"], mean_tokens=ev["mean_tokens"],
                             kl=train.get("kl"), collected=stages.get("collect", {}).get("trajectories", 0),
                             train_seconds=train.get("seconds", 0.0), success_ood=ev.get("success_ood"),
                             success_ood_low=low_ood, success_ood_high=high_ood,
                             distinct_thought_ratio=ev.get("distinct_thought_ratio"),
                             thought_entropy=ev.get("thought_entropy"), template_spread=ev.get("template_spread"))
        if base is not None:
            record.p_value = self._mcnemar(0, r)
            if record.success_ood is not None and base.success_ood is not None:
                record.p_value_ood = self._mcnemar(0, r, "eval-ood.json")
            if record.kl is not None and record.kl > self.config.kl_budget:
                record.warnings.append(f"round {r}: KL to the reference {record.kl:.3f} per token is over the "
                                       f"budget {self.config.kl_budget}")
            if record.tool_call_rate < min(self.config.min_tool_call_rate, base.tool_call_rate):
                record.warnings.append(f"round {r}: the tool-call rate collapsed to {record.tool_call_rate:.0%} "
                                       f"(round 0: {base.tool_call_rate:.0%})")
            record.warnings += collapse_warnings(r, _monitors(record), _monitors(base),
                                                 _monitors(previous) if previous is not None else None)
        return record

    def _mcnemar(self, a: int, b: int, name: str = "eval.json") -> float:
        from rankact.alignment.evaluation.significance import mcnemar_exact

        first, second = (json.loads((self.folder(r) / name).read_text())["results"] for r in (a, b))
        return mcnemar_exact([x["success"] >= 0.5 for x in first], [x["success"] >= 0.5 for x in second])[2]

    def report(self, records: list[RoundRecord]) -> None:
        (self.out / "report.json").write_text(json.dumps({
            "config": json.loads(self.config.model_dump_json()), "rounds": [r.model_dump() for r in records],
        }, indent=1))
        try:
            plot_rounds(records, self.out / "report.png")
        except Exception as exc:  # noqa: BLE001 - a missing plot must not lose the report
            self.say(f"(no plot: {exc})")


def _monitors(record: RoundRecord) -> dict[str, float | None]:
    """What the collapse warnings compare: in-distribution success is the held-out set's."""
    return {"distinct_thought_ratio": record.distinct_thought_ratio, "success_in": record.success,
            "success_out": record.success_ood}


def _rank_with_reward_model(store, reward_model: Path | None) -> list:
    """Rank every question's trajectories by a reward model's score (stored as simulated rankings:
    a model, not a person, made them)."""
    from rankact.alignment.feedback.collection.simulated import SimulatedAnnotator
    from rankact.alignment.training.reward.model import RewardModel

    if reward_model is None:
        raise RankactError("--ranker reward needs --reward-model DIR (a trained reward model)")
    model = RewardModel.load(reward_model)
    # rounded, so scores that differ by float noise tie
    ranker = SimulatedAnnotator("reward-model", score_fn=lambda t, _gold: round(float(model.score_trajectory(t)), 4))
    return ranker.annotate_all(store, require_gold=False)
