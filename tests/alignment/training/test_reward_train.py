"""Reward-model training on the tiny model: resume equals an uninterrupted run; save/load."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rankact.agent.errors import RankactError
from rankact.alignment.feedback.preferences.pairs import TextPair
from rankact.alignment.training.policy import LoraSettings
from rankact.alignment.training.reward.config import RewardTrainConfig
from rankact.alignment.training.reward.model import RewardModel
from rankact.alignment.training.reward.train import train_reward


def _pairs(n: int = 24) -> list[TextPair]:
    # Chosen answers are polite, rejected rude: something learnable, two pairs share each prompt.
    return [
        TextPair(prompt=f"\n\nHuman: question {i // 2}?\n\nAssistant:", chosen=f" Happy to help with {i}.",
                 rejected=f" Go away {i}!", group=f"q{i // 2}")
        for i in range(n)
    ]


def _config(tiny_model_dir, out, **kw) -> RewardTrainConfig:
    base = {"base": str(tiny_model_dir), "out_dir": out, "max_length": 32, "batch_size": 4, "grad_accum": 2,
            "learning_rate": 3e-3, "max_steps": 6, "save_every": 2, "seed": 3, "show_progress": False,
            "norm_samples": 8, "warmup_steps": 1}
    return RewardTrainConfig(**(base | kw))


def _weights(model: RewardModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tiny_model_dir, tmp_path):
    full, result = train_reward(_config(tiny_model_dir, tmp_path / "full"), _pairs(), log=lambda *_: None)
    assert result.steps == 6 and not result.stopped_early

    first, part = train_reward(_config(tiny_model_dir, tmp_path / "split", stop_after=3), _pairs(), log=lambda *_: None)
    assert part.stopped_early and part.steps == 3
    assert (tmp_path / "split" / "checkpoint" / "state.json").is_file()
    with pytest.raises(RankactError, match="different run"):  # other data: not this run's checkpoint
        train_reward(_config(tiny_model_dir, tmp_path / "split", resume=True), _pairs(20), log=lambda *_: None)
    resumed, rest = train_reward(_config(tiny_model_dir, tmp_path / "split", resume=True), _pairs(),
                                 log=lambda *_: None)
    assert rest.steps == 6 and not rest.stopped_early

    a, b, mid = _weights(full), _weights(resumed), _weights(first)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    # The run did train: weights moved between step 3 and step 6.
    assert any(not torch.allclose(a[n], mid[n]) for n in a)
    assert full.info.norm_samples == 8 and full.info.std > 0


def test_saved_model_round_trips_scores_and_stats(tiny_model_dir, tmp_path):
    model, _ = train_reward(_config(tiny_model_dir, tmp_path / "rm", max_steps=2), _pairs(8), log=lambda *_: None)
    texts = ["\n\nHuman: hi\n\nAssistant: Happy to help.", "\n\nHuman: hi\n\nAssistant: Go away!"]
    before = model.score_texts(texts)
    loaded = RewardModel.load(tmp_path / "rm")
    assert loaded.score_texts(texts) == pytest.approx(before, abs=1e-5)
    assert loaded.info.mean == model.info.mean and loaded.info.std == model.info.std
    assert loaded.normalized(before[0]) == pytest.approx((before[0] - model.info.mean) / model.info.std)
    head = load_file(tmp_path / "rm" / "head.safetensors")
    assert head["weight"].shape == (1, 64)


def test_lora_trains_adapters_and_head_only_and_round_trips(tiny_model_dir, tmp_path):
    model, _ = train_reward(_config(tiny_model_dir, tmp_path / "lora", lora=LoraSettings(r=4, target_modules=["q_proj", "v_proj"]),
                                    max_steps=2),
                            _pairs(8), log=lambda *_: None)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert any(n.startswith("head.") for n in trainable)
    assert (tmp_path / "lora" / "backbone" / "adapter_config.json").is_file()
    texts = ["\n\nHuman: a\n\nAssistant: b", "c"]
    assert RewardModel.load(tmp_path / "lora").score_texts(texts) == pytest.approx(
        model.score_texts(texts), abs=1e-5)
