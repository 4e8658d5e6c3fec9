"""The score head and pooling, where rankact's reward model and TRL's RewardTrainer were
compared (bench/reward_trl_parity.py): the head starts at TRL's std, the bias it keeps is
invisible to the pairwise loss, and the trailing end-of-turn token is read even when the
tokenizer pads with it."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rankact.alignment.training.losses import bradley_terry_loss
from rankact.alignment.training.reward import train as reward_train
from rankact.alignment.training.reward.config import RewardTrainConfig
from rankact.alignment.training.reward.model import RewardModel, RewardModelInfo

WIDE = 16_384  # enough head weights that their sample std is within ~1% of the init std


def _head(**kw) -> nn.Linear:
    torch.manual_seed(0)
    return RewardModel(nn.Identity(), None, RewardModelInfo(base_model="x", hidden_size=WIDE), **kw).head


def test_head_starts_at_trls_std_with_a_zero_bias(tmp_path):
    assert RewardTrainConfig(out_dir=tmp_path).head_init_std == 0.02
    head = _head()
    assert head.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert head.weight.mean().item() == pytest.approx(0.0, abs=0.02 * 4 / math.sqrt(WIDE))
    assert torch.count_nonzero(head.bias) == 0


def test_the_former_fan_in_init_is_one_option_away():
    former = 1 / math.sqrt(WIDE + 1)
    assert _head(head_init_std=former).weight.std().item() == pytest.approx(former, rel=0.03)


def test_training_builds_the_head_with_the_configured_std(tiny_model_dir, tmp_path, monkeypatch):
    seen = {}

    class Built(Exception):
        pass

    def from_base(*args, **kwargs):
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr(reward_train.RewardModel, "from_base", from_base)
    config = RewardTrainConfig(base=str(tiny_model_dir), out_dir=tmp_path, head_init_std=0.005, show_progress=False)
    with pytest.raises(Built):
        reward_train.train_reward(config, [], log=lambda *_: None)
    assert seen["head_init_std"] == 0.005


def test_the_pairwise_loss_gives_the_head_bias_no_gradient_but_centering_does():
    # Why keeping a bias (TRL's head has none) cannot change training: it cancels in r_c - r_r.
    torch.manual_seed(0)
    head = nn.Linear(8, 1)
    chosen, rejected = torch.randn(5, 8), torch.randn(5, 8)
    bradley_terry_loss(head(chosen).squeeze(-1), head(rejected).squeeze(-1), margin=0.3).backward()
    assert head.bias.grad.item() == 0.0 and head.weight.grad.abs().sum() > 0
    head.zero_grad()
    bradley_terry_loss(head(chosen).squeeze(-1), head(rejected).squeeze(-1), center_coef=0.01).backward()
    assert head.bias.grad.abs().item() > 0


def test_a_trailing_token_equal_to_the_pad_id_is_read(tiny_model_dir):
    # SmolLM2 pads with <|im_end|>, which also ends every chat turn. Pooling by the attention
    # mask reads that last <|im_end|>; pooling by `input_ids != pad_id` (transformers' sequence
    # classifiers, hence TRL) would read the token before it.
    model = RewardModel.from_base(tiny_model_dir, max_length=16)
    body = [100, 200, 300]
    with torch.no_grad():
        ended = model(torch.tensor([body + [model.pad_id]]), torch.ones(1, 4, dtype=torch.long))
        cut = model(torch.tensor([body]), torch.ones(1, 3, dtype=torch.long))
        padded = model(torch.tensor([body + [model.pad_id, model.pad_id]]), torch.tensor([[1, 1, 1, 1, 0]]))
    assert torch.allclose(ended, padded, atol=1e-5)
    assert not torch.allclose(ended, cut, atol=1e-4)
