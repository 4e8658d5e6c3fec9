"""Settings every trainer shares, with defaults that run on a 2-core CPU.

`TrainConfig` is the base the reward-model (`reward.config`), SFT, DPO and GRPO
(`sft_config`, `dpo_config`, `grpo_config`, over `OfflineTrainConfig` here) and PPO
(`ppo.config`) configs extend; `PolicyTrainConfig` adds what only the policy trainers use.
The `rankact align` options are generated from these fields (`rankact.cli.config_options`):
a default or a help text lives here once, never restated in the CLI.

Every config module imports pydantic only, never torch: `rankact align ... --help` builds its
options from them and must answer at once (a test imports them and checks).
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
DEFAULT_CHUNK_SIZE = 512  # log-prob rows per vocabulary projection: 512 x 49k float32 logits = 100 MB


class LoraSettings(BaseModel):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # "all-linear": every linear layer but the output head, peft's recommended default.
    target_modules: str | list[str] = "all-linear"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    out_dir: Path = Field(description="output folder: the trained model, metrics.jsonl, metrics.png, checkpoint")
    base: str | None = Field(None, description="model folder to start from (default: the embedded model)")
    lora: LoraSettings | None = Field(None, description="train LoRA adapters instead of all weights")
    learning_rate: float | None = Field(None, gt=0, description="learning rate (default depends on --lora)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient norm to this")
    max_length: int = Field(1024, ge=8, description="tokens per sequence (the prompt is cut first)")
    max_minutes: float | None = Field(None, gt=0, description="stop (and save) after M minutes")
    save_every: int = Field(50, ge=1, description="checkpoint every N steps")
    resume: bool = Field(False, description="continue from the checkpoint in the output folder")
    seed: int = Field(0, description="seed for data order, sampling and initialisation")
    mixed_precision: MixedPrecision = Field(
        "no", description="auto: bf16 on a GPU that supports it, else fp32; or no, bf16, fp16")
    show_progress: bool = Field(True, description="show a progress bar")
    gradient_checkpointing: bool = Field(
        True, description="recompute each decoder layer's activations in backward instead of keeping them "
                          "(much less memory; one more forward per backward)")

    # Per trainer: learning rate (with LoRA, full fine-tuning) and the LoRA settings `--lora` means.
    DEFAULT_LR: ClassVar[tuple[float, float]] = (1e-4, 1e-5)
    DEFAULT_LORA: ClassVar[LoraSettings] = LoraSettings()

    @property
    def lr(self) -> float:
        lora_lr, full_lr = self.DEFAULT_LR
        return self.learning_rate or (lora_lr if self.lora else full_lr)


class PolicyTrainConfig(TrainConfig):
    """Settings of the trainers that update the policy LM (SFT, DPO, PPO)."""

    logprob_chunk: int | None = Field(
        DEFAULT_CHUNK_SIZE, ge=1, description="positions projected onto the vocabulary at a time for log-probs "
                                              "(memory vs speed)")
    retokenize: bool = Field(False, description="train on trajectories without exact token ids (served chat "
                                                "replies) by tokenizing their text; warns, since the ids can "
                                                "differ from what the model produced")


class ReplaySettings(BaseModel):
    """The settings of the replay term, shared by the trainers that take it (SFT, DPO, GRPO)."""

    replay: Path | None = Field(None, description="replay file (JSONL from `rankact align replay`): the starting "
                                                  "policy's replies it should keep while training")
    replay_coef: float = Field(1.0, ge=0, description="weight of the replay term (NLL of the replayed replies)")
    replay_batch_size: int = Field(2, ge=1, description="replayed replies per optimizer step")


class OfflineTrainConfig(PolicyTrainConfig, ReplaySettings):
    """Settings shared by the offline policy trainers (best-of-K SFT and DPO; GRPO restates the
    data and step settings it defaults otherwise)."""

    pairs: Path | None = Field(None, description="pair file (JSONL from `rankact feedback export`)")
    db: str | None = Field(None, description="or a trajectory store URL: pairs from its rankings")
    batch_size: int = Field(2, ge=1, description="items per optimizer step, over all processes")
    epochs: int = Field(1, ge=1, description="passes over the data")
    max_steps: int | None = Field(None, ge=1, description="stop after N optimizer steps")
    monitor_every: int = Field(4, ge=1, description="measure KL to the reference and entropy on a probe of "
                                                    "16 training samples every N steps (and at the last)")
    kl_budget: float | None = Field(0.5, gt=0, description="warn when the per-token KL to the reference passes this")
    stop_on_kl_budget: bool = Field(False, description="stop (and save) when the KL budget is passed")
