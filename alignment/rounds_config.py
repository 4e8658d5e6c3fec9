"""`RoundsConfig`: the settings of `rankact align rounds` (`rounds.Rounds`). Pydantic only, no
torch, so the CLI can build its options without loading a trainer.

The trainer of each round is configured by the method's own config (`SFTConfig`, `GRPOConfig`,
`DPOConfig`): `trainer` overrides any of its fields, validated against the chosen method, and
a few flat keys (`train_steps`, `learning_rate`, ...) stay as documented shortcuts, so existing
recipes and command lines keep working.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankact.agent.batch import DEFAULT_BATCH_SIZE
from rankact.agent.errors import RankactError
from rankact.alignment.tasks.datasets import PASSAGE_PRESETS, trained_presets
from rankact.alignment.training.dpo_config import DPOConfig
from rankact.alignment.training.grpo_config import GRPOConfig
from rankact.alignment.training.sft_config import SFTConfig

Ranker = Literal["simulated", "people", "reward"]
Method = Literal["grpo", "sft", "dpo"]


TRAINER_CONFIGS: dict[str, type[BaseModel]] = {"sft": SFTConfig, "grpo": GRPOConfig, "dpo": DPOConfig}
# Flat RoundsConfig keys -> the trainer setting each stands for (applied where the method has it).
SHORTCUTS = {"train_steps": "max_steps", "train_batch_size": "batch_size", "learning_rate": "learning_rate",
             "max_length": "max_length", "kl_coef": "kl_coef", "clip_range": "clip_range",
             "gradient_checkpointing": "gradient_checkpointing"}
# What each round sets itself: its folder, starting policy, seed, data and replay file.
SET_BY_ROUNDS = {"out_dir", "base", "lora", "seed", "resume", "show_progress", "db", "pairs", "replay", "replay_coef"}


class RoundsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_dir: Path = Field(description="run folder: one sub-folder per round, report.json, report.png")
    tasks: str = Field(description="training tasks: a task file or a preset (arith:dev, hotpot:dev, nq:dev)")
    heldout: str = Field(description="held-out tasks measured every round (a file or a preset; never TEST "
                                     "while tuning)")
    train_limit: int | None = Field(None, ge=1, description="use the first N training tasks")
    heldout_limit: int | None = Field(None, ge=1, description="use the first N held-out tasks")
    heldout_skip: int = Field(0, ge=0, description="skip the first N held-out tasks (to keep them apart "
                                                   "from training tasks drawn from the same split)")
    heldout_ood: str | None = Field(None, description="out-of-distribution held-out tasks measured every round "
                                                      "beside --heldout: phrasings or sets never trained on "
                                                      "(e.g. arith-heldout:dev); choose recipes on these")
    heldout_ood_limit: int | None = Field(None, ge=1, description="use the first N out-of-distribution tasks")
    base: str = Field("default", description="starting policy (a model folder or default)")
    rounds: int = Field(2, ge=1, description="collect -> rank -> train -> evaluate rounds")
    samples: int = Field(4, ge=2, description="K trajectories per training task and round")
    temperature: float = Field(0.7, gt=0, description="sampling temperature when collecting")
    agent_max_steps: int = Field(3, ge=1, description="agent steps per trajectory")
    ranker: Ranker = Field("simulated", description="who ranks: simulated (gold answers), reward (a reward "
                                                    "model) or people (waits for rankings in the round's store)")
    simulated_criteria: Literal["outcome", "process"] = Field(
        "outcome", description="simulated ranker: outcome (answer, then evidence; the rest ties) or process "
                               "(also finished, fewer errors, fewer steps)")
    reward_model: Path | None = Field(None, description="reward model folder, for --ranker reward")
    wait_minutes: float = Field(0.0, ge=0, description="with --ranker people: how long to wait for rankings "
                                                        "before stopping (rerun to resume)")
    # sft by default: on held-out arithmetic (24 DEV questions, one round of 12x4 rollouts) best-of-K SFT
    # went 17% -> 33% and GRPO from the same rankings 17% -> 12% (process ranks) and 12% (outcome ranks):
    # with few successes the likelihood of the good runs moves the 135M policy; clipped ratios barely do.
    method: Method = Field("sft", description="trainer: sft (best-of-K), grpo (group-relative from rankings), dpo")
    # The trainer's settings: `trainer` overrides any field of the method's config (SFTConfig,
    # GRPOConfig, DPOConfig). The flat keys below are documented shortcuts for the settings rounds
    # tune most; their defaults are the rounds' own (short LoRA runs on agent trajectories) or read
    # from the trainer's config, never restated. `trainer` wins over a shortcut (the command line
    # passes every option, so "given" cannot be told from "default" there).
    trainer: dict[str, Any] = Field(default_factory=dict, description="settings of the method's trainer config "
                                    "(as `rankact align sft|grpo|dpo` names them, e.g. {\"max_steps\": 24, "
                                    "\"kl_coef\": 0.1}); they override the shortcuts below")
    train_steps: int = Field(12, ge=1, description="optimizer steps per round (trainer max_steps)")
    train_batch_size: int = Field(4, ge=1, description="trajectories (pairs for dpo) per optimizer step "
                                                       "(trainer batch_size)")
    learning_rate: float = Field(2e-4, gt=0, description="LoRA learning rate (trainer learning_rate)")
    max_length: int = Field(768, ge=64, description="training tokens per trajectory (the prompt is cut first)")
    kl_coef: float = Field(GRPOConfig.model_fields["kl_coef"].default, ge=0,
                           description="grpo: KL penalty to the round's starting policy")
    clip_range: float = Field(GRPOConfig.model_fields["clip_range"].default, gt=0,
                              description="grpo: how far one round may move a token's probability ratio from the "
                                          "round's starting policy")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (agent trajectories "
                                                            "are short: off is faster; on for long ones)")
    kl_budget: float = Field(0.5, gt=0, description="warn when the per-token KL of a round passes this (and the "
                                                    "trainer's own KL budget)")
    min_tool_call_rate: float = Field(0.1, ge=0, le=1, description="warn when the held-out tool-call rate "
                                                                   "falls below this (and below round 0's)")
    stop_on_collapse: bool = Field(False, description="stop the rounds when a monitor warns")
    index: Path | None = Field(None, description="retrieval index for the search tool (presets bring theirs)")
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1,
                            description="trajectories advanced together when collecting or evaluating")
    data: Path | None = Field(None, description="evaluation data folder (default ../shared/data)")
    served_policy: str | None = Field(None, description="vLLM server(s) serving --base (URL, or comma-separated "
                                      "URLs) that collect and evaluate: each round's policy is pushed to them "
                                      "as a LoRA adapter")
    demonstrations: Path | None = Field(None, description="a JSONL of written demonstrations of training "
                                        "questions (alignment.feedback.demonstrations.recording): each joins its question's "
                                        "samples every round and is ranked with them")
    lookup: str | None = Field(None, description="DEV sets with passages (comma-separated presets, e.g. nq:dev,"
                                                 "hotpot:dev) taught from gold-answer lookup demonstrations "
                                                 "(alignment.feedback.demonstrations.lookup) beside the ranked "
                                                 "samples; nothing is sampled for them (method sft only)")
    lookup_limit: int = Field(64, ge=1, description="lookup demonstrations written per --lookup set")
    replay: str | None = Field(None, description="DEV request sets (comma-separated presets, e.g. advbench:dev,"
                                                 "nq:dev): the starting policy's sampled plain replies to them are "
                                                 "replayed while training, so it keeps its behaviour there "
                                                 "(alignment.training.replay)")
    replay_limit: int = Field(16, ge=1, description="replies kept from each --replay set (a harmful set keeps only "
                                                    "refusals, so more of it is read)")
    replay_coef: float = Field(1.0, gt=0, description="weight of the replay term beside the trainer's loss")
    refusals: str | None = Field(None, description="harmful DEV request sets (e.g. advbench:dev) whose requests "
                                                   "get a written refusal, trained beside the replayed replies "
                                                   "(alignment.feedback.demonstrations.refusal); pair it with "
                                                   "--replay benign:dev and measure benign:dev refusals")
    refusal_limit: int = Field(32, ge=1, description="written refusals per --refusals set")
    seed: int = Field(0, description="seed of sampling and training")

    @model_validator(mode="after")
    def _refusals_are_for_harmful_dev_sets(self) -> RoundsConfig:
        from rankact.alignment.feedback.demonstrations.refusal import refusal_sets

        if self.refusals is not None:
            try:
                refusal_sets(self.refusals)
            except RankactError as exc:
                raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _lookup_trains_with_sft(self) -> RoundsConfig:
        if self.lookup is None:
            return self
        if self.method != "sft":
            raise ValueError(f"lookup demonstrations have no sampled runs to be ranked against, so only best-of-K "
                             f"SFT trains on them: use method sft (not {self.method}) with --lookup")
        try:
            trained_presets(self.lookup, PASSAGE_PRESETS, "--lookup", "a preset with passages (nq:dev, hotpot:dev)")
        except RankactError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("trainer", mode="before")
    @classmethod
    def _dashes_are_underscores(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).replace("-", "_"): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _trainer_settings_fit_the_method(self) -> RoundsConfig:
        config_cls = TRAINER_CONFIGS[self.method]
        for key in sorted(self.trainer):
            if key in SET_BY_ROUNDS:
                raise ValueError(f"trainer setting {key!r} is set by the rounds themselves, per round")
            if key not in config_cls.model_fields:
                raise ValueError(f"trainer setting {key!r} is not a setting of {config_cls.__name__} (method "
                                 f"{self.method}); see `rankact align {self.method} --help`")
        try:
            self.trainer_config(out_dir=self.out_dir)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"trainer setting {'.'.join(map(str, first['loc']))!r}: {first['msg']}") from None
        return self

    def trainer_settings(self) -> dict[str, Any]:
        """The trainer config's values a round uses, but for what each round sets itself: the
        round defaults, then the shortcuts the method's config has, then `trainer`."""
        fields = TRAINER_CONFIGS[self.method].model_fields
        values: dict[str, Any] = {"epochs": 1000}  # steps, not passes, end a round's training
        values["kl_budget"] = self.kl_budget
        values.update({key: getattr(self, shortcut) for shortcut, key in SHORTCUTS.items() if key in fields})
        return {**values, **self.trainer}

    def trainer_config(self, **per_round: Any) -> BaseModel:
        """The method's trainer config: `trainer_settings()` plus what the round sets (`SET_BY_ROUNDS`)."""
        return TRAINER_CONFIGS[self.method](**{**self.trainer_settings(), **per_round})
