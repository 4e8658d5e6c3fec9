"""Hand-computed fixtures for the token-level RL functions, and masking invariance:
prompt/observation tokens must not change any loss."""
from __future__ import annotations

import math

import pytest
import torch

from rankact.alignment.training.advantages import gae
from rankact.alignment.training.kl import AdaptiveKL, FixedKL, kl_k1, kl_k3, make_kl_controller
from rankact.alignment.training.logprobs import entropy_from_logits, sequence_logprobs
from rankact.alignment.training.losses import (
    dpo_loss,
    ipo_loss,
    masked_nll,
    nll_loss,
    policy_loss,
    sigmoid_dpo_loss,
    value_loss,
)
from rankact.alignment.training.masked import masked_mean, whiten


@pytest.mark.parametrize(
    ("gamma", "lam", "expected"),
    [(1.0, 1.0, [6.0, 5.0, 3.0]), (0.5, 1.0, [2.75, 3.5, 3.0]), (1.0, 0.5, [3.625, 4.25, 3.0])],
)
def test_gae_fixtures(gamma, lam, expected):
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=gamma, lam=lam)
    assert returns[0].tolist() == pytest.approx(expected)
    assert (advantages + values)[0].tolist() == pytest.approx(expected)


def test_gae_skips_masked_positions():
    # The same 3 generated tokens with an observation (and prompt) interleaved: the masked
    # tokens are skipped, so the valid positions get exactly the unmasked answer.
    rewards = torch.tensor([[9.0, 1.0, 7.0, 7.0, 2.0, 3.0, 5.0]])
    values = torch.tensor([[4.0, 0.5, 8.0, -3.0, 1.0, 1.5, 2.0]])
    mask = torch.tensor([[0, 1, 0, 0, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert returns[0, [1, 4, 5]].tolist() == pytest.approx([2.75, 3.5, 3.0])
    assert returns[0, [0, 2, 3, 6]].tolist() == [0.0] * 4
    assert advantages[0, [0, 2, 3, 6]].tolist() == [0.0] * 4


def test_sequence_logprobs_hand_computed():
    # Vocabulary of 2; logits at t predict token t+1.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    ids = torch.tensor([[1, 0, 1]])
    logp = sequence_logprobs(logits, ids, torch.ones(1, 3))
    assert logp[0].tolist() == pytest.approx([0.0, math.log(0.5), math.log(0.25)])
    masked = sequence_logprobs(logits, ids, torch.tensor([[0, 0, 1]]))
    assert masked[0].tolist() == pytest.approx([0.0, 0.0, math.log(0.25)])


def test_entropy_and_nll():
    logits = torch.tensor([[[0.0, 0.0], [100.0, 0.0], [0.0, 0.0]]])
    ids = torch.tensor([[0, 1, 0]])
    entropy = entropy_from_logits(logits, torch.ones(1, 3))
    assert entropy[0].tolist() == pytest.approx([0.0, math.log(2.0), 0.0], abs=1e-6)
    assert nll_loss(logits, ids, torch.tensor([[0, 1, 0]])).item() == pytest.approx(math.log(2.0))


def test_kl_zero_when_policy_equals_reference():
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    assert kl_k1(logp, logp).abs().max().item() == 0.0
    assert kl_k3(logp, logp).abs().max().item() == 0.0
    other = torch.log(torch.tensor([[0.3, 0.4, 0.5]]))
    assert (kl_k3(logp, other) > 0).all()  # k3 is never negative


def test_kl_k3_matches_true_kl_in_expectation():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(5), 0)
    q = torch.softmax(torch.randn(5), 0)
    samples = torch.multinomial(p, 200_000, replacement=True)
    estimate = kl_k3(p.log()[samples], q.log()[samples]).mean().item()
    exact = (p * (p.log() - q.log())).sum().item()
    assert estimate == pytest.approx(exact, rel=0.05)
    assert kl_k1(p.log()[samples], q.log()[samples]).mean().item() == pytest.approx(exact, rel=0.05)


def test_whiten_uses_valid_tokens_only():
    x = torch.tensor([[1.0, 100.0, 3.0, -50.0]])
    mask = torch.tensor([[1, 0, 1, 0]])
    w = whiten(x, mask)
    assert w[0, [1, 3]].tolist() == [0.0, 0.0]
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert w[0, 0].item() == pytest.approx(-1 / math.sqrt(2), rel=1e-4)  # unbiased var = 2


def _losses(logp, old_logp, values, old_values, advantages, returns, mask):
    pl, stats = policy_loss(logp, old_logp, advantages, mask, clip_range=0.2)
    vl, _ = value_loss(values, old_values, returns, mask, clip_range_value=0.2)
    return pl, vl, stats


def test_losses_ignore_observation_tokens():
    torch.manual_seed(1)
    mask = torch.tensor([[0, 1, 1, 0, 0, 1, 1]], dtype=torch.float32)  # prompt, gen, obs, gen
    logp, old_logp, values, old_values = (torch.randn(1, 7) for _ in range(4))
    rewards = torch.randn(1, 7)
    adv, ret = gae(rewards, old_values, mask, gamma=1.0, lam=0.95)
    adv = whiten(adv, mask)
    base = _losses(logp, old_logp, values, old_values, adv, ret, mask)

    noisy = [t.clone() for t in (logp, old_logp, values, old_values, rewards)]
    for t in noisy:
        t[mask == 0] = torch.randn(int((mask == 0).sum())) * 100
    adv2, ret2 = gae(noisy[4], noisy[3], mask, gamma=1.0, lam=0.95)
    adv2 = whiten(adv2, mask)
    changed = _losses(noisy[0], noisy[1], noisy[2], noisy[3], adv2, ret2, mask)
    assert changed[0].item() == pytest.approx(base[0].item())
    assert changed[1].item() == pytest.approx(base[1].item())
    assert changed[2]["clipfrac"].item() == pytest.approx(base[2]["clipfrac"].item())


def test_policy_loss_clips():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[2.0, 1.0]]))  # ratio 2 (clipped to 1.2) and 1
    adv = torch.tensor([[1.0, -1.0]])
    loss, stats = policy_loss(new, old, adv, mask, clip_range=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.0) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_value_loss_clips():
    mask = torch.ones(1, 1)
    loss, _ = value_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), mask, 0.5)
    # unclipped (2-1)²=1, clipped (0.5-1)²=0.25 -> max 1, times 0.5
    assert loss.item() == pytest.approx(0.5)
    loss_none, _ = value_loss(torch.tensor([[3.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), mask, None)
    assert loss_none.item() == pytest.approx(2.0)


def test_dpo_first_step_is_ln2_and_variants():
    logps = torch.tensor([-12.0, -3.5])
    rejected = torch.tensor([-8.0, -20.0])
    losses, chosen_r, rejected_r = dpo_loss(logps, rejected, logps, rejected, beta=0.1)
    assert losses.tolist() == pytest.approx([math.log(2.0)] * 2)
    assert chosen_r.tolist() == [0.0, 0.0] and rejected_r.tolist() == [0.0, 0.0]
    # Hand-computed: margin (1 - 0) - (0 - 0) = 1, β=0.5 -> -log σ(0.5)
    one = torch.tensor([1.0])
    zero = torch.tensor([0.0])
    expected = -math.log(1 / (1 + math.exp(-0.5)))
    assert sigmoid_dpo_loss(one, zero, zero, zero, beta=0.5).item() == pytest.approx(expected)
    assert ipo_loss(one, zero, zero, zero, beta=0.5).item() == pytest.approx(0.0)  # h = 1/(2β) = 1
    with pytest.raises(ValueError):
        dpo_loss(one, zero, zero, zero, loss_type="nope")


def test_kl_controllers():
    assert isinstance(make_kl_controller(0.05, None), FixedKL)
    adaptive = make_kl_controller(0.1, target=1.0, horizon=10)
    assert isinstance(adaptive, AdaptiveKL)
    assert adaptive.update(current_kl=5.0, n_steps=10) == pytest.approx(0.12)  # error clipped at +0.2
    assert adaptive.update(current_kl=0.0, n_steps=10) == pytest.approx(0.096)


def test_tail_logits_match_full_forward(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from rankact.alignment.training.logprobs import tail_start, token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 11, 0]])
    attention = torch.tensor([[1] * 6, [1, 1, 1, 1, 1, 0]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 0]])
    assert tail_start(mask) == 2
    full = sequence_logprobs(model(input_ids=ids, attention_mask=attention).logits, ids, mask)
    tail, _ = token_logprobs(model, ids, attention, mask)
    assert torch.allclose(full, tail, atol=1e-5)


def test_masked_positions_cannot_leak_nan():
    x = torch.tensor([[1.0, float("nan"), 3.0]])
    mask = torch.tensor([[1, 0, 1]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    assert not torch.isnan(whiten(x, mask)).any()


def test_masked_nll_is_the_nll_sft_and_replay_inlined_bit_for_bit():
    torch.manual_seed(0)
    logp = -4 * torch.rand(3, 7)
    mask = (torch.rand(3, 7) > 0.4).float()
    assert torch.equal(masked_nll(logp, mask), -masked_mean(logp, mask))  # SFT's former inline loss
    assert torch.equal(0.7 * masked_nll(logp, mask), 0.7 * -masked_mean(logp, mask))  # the replay term's
    logits, ids = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    trainable = torch.tensor([[0, 1, 1, 0, 1], [0, 0, 1, 1, 1]])
    assert torch.equal(nll_loss(logits, ids, trainable), masked_nll(sequence_logprobs(logits, ids, trainable), trainable))
