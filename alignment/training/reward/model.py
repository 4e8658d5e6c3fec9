"""`RewardModel`: a causal LM backbone with a scalar head read at the last non-padding token.

It never projects onto the vocabulary: `forward` runs the decoder alone (`get_decoder()`) to
its last hidden state and applies the `[hidden, 1]` head there, so the 49k-wide logits that
the policy trainers compute in chunks (`rankact.alignment.training.logprobs`) never exist here.

Saved as a folder:
  backbone/            the fine-tuned model (save_pretrained) or a peft LoRA adapter
  tokenizer files      in backbone/
  head.safetensors     the nn.Linear(hidden, 1) head
  reward_config.json   base model, lora flag, max_length, normalization stats (mean, std)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from rankact.agent.errors import ModelLoadError, RankactError
from rankact.agent.trajectory import Trajectory
from rankact.alignment.training.policy import LoraSettings, apply_lora, load_causal_lm, resolve_base
from rankact.alignment.training.reward.config import HEAD_INIT_STD
from rankact.alignment.training.tokenize import (
    Encoded,
    collate,
    encode_prompt_completion,
    encode_text,
    encode_trajectory,
    pad_token_id,
)

CONFIG_FILE = "reward_config.json"
HEAD_FILE = "head.safetensors"
BACKBONE_DIR = "backbone"
FORMAT = "rankact-reward-model/1"


class RewardModelInfo(BaseModel):
    format: str = FORMAT
    base_model: str  # the backbone's name or folder it was trained from
    lora: bool = False
    max_length: int = 512
    hidden_size: int
    mean: float = 0.0
    std: float = 1.0
    norm_samples: int = 0  # how many scores the stats come from (0 = not computed)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last 1 in each row: the same token whichever side the padding is on."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


class RewardModel(nn.Module):
    def __init__(
        self, lm: nn.Module, tokenizer, info: RewardModelInfo, head: nn.Linear | None = None,
        head_init_std: float = HEAD_INIT_STD,
    ):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.info = info
        if head is None:
            head = nn.Linear(info.hidden_size, 1)
            # Small init so the first scores are near 0 (why 0.02: `RewardTrainConfig.head_init_std`).
            # The bias stays: the pairwise loss gives it no gradient, reward centering uses it.
            nn.init.normal_(head.weight, std=head_init_std)
            nn.init.zeros_(head.bias)
        self.head = head

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_base(
        cls,
        base: str | Path | None = None,
        max_length: int = 512,
        lora: LoraSettings | None = None,
        head_init_std: float = HEAD_INIT_STD,
    ) -> RewardModel:
        from transformers import AutoTokenizer

        path = resolve_base(base)
        lm = load_causal_lm(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if lora is not None:
            lm = apply_lora(lm, lora, task_type=None)
        # A LoRA adapter needs the exact base folder to load onto; a full model only its name.
        name = str(path) if lora is not None or base is not None else _embedded_name()
        info = RewardModelInfo(base_model=name, lora=lora is not None, max_length=max_length,
                               hidden_size=lm.config.hidden_size)
        return cls(lm, tokenizer, info, head_init_std=head_init_std)

    @classmethod
    def load(cls, folder: str | Path) -> RewardModel:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise ModelLoadError(f"not a reward model folder (no {CONFIG_FILE}): {folder}")
        try:
            info = RewardModelInfo.model_validate_json(config_path.read_text())
        except ValidationError as exc:
            raise ModelLoadError(f"{config_path} is not a valid reward model config: {exc}") from None
        backbone = folder / BACKBONE_DIR
        if info.lora:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(load_causal_lm(resolve_base(info.base_model)), backbone)
        else:
            lm = load_causal_lm(backbone)
        tokenizer = AutoTokenizer.from_pretrained(backbone)
        head = nn.Linear(info.hidden_size, 1)
        head.load_state_dict(load_file(folder / HEAD_FILE))
        model = cls(lm, tokenizer, info, head)
        model.eval()
        return model

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(folder / BACKBONE_DIR)
        self.tokenizer.save_pretrained(folder / BACKBONE_DIR)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, folder / HEAD_FILE)
        # Config last: its presence marks a complete folder.
        (folder / CONFIG_FILE).write_text(self.info.model_dump_json(indent=2))

    # ------------------------------------------------------------------ scoring

    @property
    def pad_id(self) -> int:
        return pad_token_id(self.tokenizer)

    def decoder(self) -> nn.Module:
        # The decoder stack alone: skips the LM head (a vocab-sized matmul we never use).
        # LoRA layers are injected in place, so this sees them too.
        return self.lm.get_decoder()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Positions from the mask, so a left-padded row sees the same positions as a right-padded one.
        position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        hidden = self.decoder()(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.head(picked.to(self.head.weight.dtype)).squeeze(-1)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def encode(self, trajectory: Trajectory) -> Encoded:
        """The ids this model reads for a trajectory: the same function (and max_length) that
        encoded its training pairs, so PPO-time scores are on what it was trained on."""
        return encode_trajectory(trajectory, self.tokenizer, self.info.max_length)

    @torch.no_grad()
    def score_encoded(self, samples: Sequence[Encoded], batch_size: int = 8) -> list[float]:
        """Scores of encoded sequences, batched by similar length (any batch size gives the
        same numbers up to float noise)."""
        if any(len(s) == 0 for s in samples):
            raise RankactError("cannot score an empty sequence")
        was_training = self.training
        self.eval()
        order = sorted(range(len(samples)), key=lambda i: len(samples[i]))  # similar lengths pad less
        scores = [0.0] * len(samples)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = collate([samples[i] for i in chunk], self.pad_id)
            values = self(batch.input_ids.to(self.device), batch.attention_mask.to(self.device)).float().cpu().tolist()
            for i, value in zip(chunk, values, strict=True):
                scores[i] = value
        self.train(was_training)
        return scores

    def score_ids(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> list[float]:
        """Scores of token-id sequences (truncated like any other to max_length)."""
        return self.score_encoded([encode_prompt_completion([], s, self.info.max_length) for s in sequences],
                                  batch_size)

    def score_texts(self, texts: Sequence[str], batch_size: int = 8) -> list[float]:
        return self.score_encoded([encode_text("", t, self.tokenizer, self.info.max_length) for t in texts],
                                  batch_size)

    def score_trajectory(self, trajectory: Trajectory) -> float:
        return self.score_encoded([self.encode(trajectory)])[0]

    def normalized(self, x: float | torch.Tensor) -> float | torch.Tensor:
        """(x - mean) / std with the stats saved at training time (for PPO reward whitening)."""
        return (x - self.info.mean) / (self.info.std if self.info.std > 0 else 1.0)

    def set_normalization(self, scores: Sequence[float]) -> None:
        values = torch.tensor(list(scores), dtype=torch.float64)
        self.info.mean = values.mean().item()
        self.info.std = values.std().item() if len(values) > 1 else 1.0
        self.info.norm_samples = len(values)


def _embedded_name() -> str:
    from rankact.agent.llm.model_files import EMBEDDED_NAME

    return EMBEDDED_NAME


def is_reward_model(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def read_info(folder: str | Path) -> dict:
    return json.loads((Path(folder) / CONFIG_FILE).read_text())
