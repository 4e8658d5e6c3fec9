"""Chunked log-probs (`rankact.alignment.training.logprobs`) against the full-logits definition on the
tiny random Llama: values, entropies and gradients, for chunk sizes that do and do not divide
the number of trainable tokens, padding rows, an all-masked row, temperature != 1, LoRA."""
from __future__ import annotations

import pytest
import torch

from rankact.alignment.training.logprobs import (
    entropy_from_logits,
    final_hidden,
    hidden_logprobs,
    lm_head,
    sequence_logprobs,
    token_logprobs,
    unwrap,
)

# Row 0: full length; row 1: right padding; row 2: nothing trainable; row 3: trainable tokens
# in two runs with an "observation" between them.
IDS = torch.tensor([
    [1, 504, 3062, 28, 900, 901, 902, 903, 904, 905, 906],
    [1, 504, 3062, 28, 910, 911, 912, 0, 0, 0, 0],
    [1, 504, 3062, 28, 920, 921, 922, 923, 0, 0, 0],
    [1, 504, 3062, 28, 930, 931, 700, 701, 932, 933, 934],
])
ATTENTION = (IDS != 0).long()
ATTENTION[:, 0] = 1
MASK = torch.tensor([
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1],
])  # 15 trainable tokens


def _model(tiny_model_dir, lora: bool = False):
    from rankact.alignment.training.policy import LoraSettings, load_policy

    torch.manual_seed(0)
    model, _ = load_policy(tiny_model_dir, LoraSettings(r=4, alpha=8) if lora else None)
    if lora:  # peft starts B at zero (a no-op adapter): perturb it so the adapters matter
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.05)
    return model.eval()  # no dropout: both paths must see the same function


def _full(model, temperature: float):
    """The definition: every position's logits at once, then log-softmax."""
    logits = model(input_ids=IDS, attention_mask=ATTENTION, use_cache=False).logits / temperature
    return sequence_logprobs(logits, IDS, MASK), entropy_from_logits(logits, MASK)


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _loss(logp, entropy):
    # Weights per position, so every token's gradient counts differently.
    weights = torch.linspace(0.5, 1.5, IDS.numel()).view(IDS.shape)
    return (logp * weights).sum() + 0.3 * (entropy * weights).sum()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_matches_full_logits(tiny_model_dir, lora, temperature):
    model = _model(tiny_model_dir, lora)
    want_logp, want_entropy = _full(model, temperature)
    want_grads = _grads(model, _loss(want_logp, want_entropy))
    # 1 and 4 do not divide 15 evenly (4) or make every row its own chunk (1); 15 is one chunk; 64 > N.
    for chunk_size in (1, 4, 15, 64, None):
        logp, entropy = token_logprobs(model, IDS, ATTENTION, MASK, temperature=temperature, with_entropy=True,
                                       chunk_size=chunk_size)
        assert logp.shape == entropy.shape == IDS.shape
        assert torch.allclose(logp, want_logp, atol=1e-5), chunk_size
        assert torch.allclose(entropy, want_entropy, atol=1e-5), chunk_size
        assert (logp[MASK == 0] == 0).all() and (entropy[MASK == 0] == 0).all()
        grads = _grads(model, _loss(logp, entropy))
        assert grads.keys() == want_grads.keys()
        for name, grad in grads.items():
            # Summation order differs (the tied embedding sums one contribution per chunk), so
            # the tolerance scales with the gradient: a wrong gradient is off by its own size.
            scale = float(want_grads[name].abs().max().clamp(min=1.0))
            assert torch.allclose(grad, want_grads[name], atol=2e-5 * scale, rtol=1e-4), (chunk_size, name)


def test_all_masked_batch_gives_zeros_and_a_graph(tiny_model_dir):
    model = _model(tiny_model_dir)
    mask = torch.zeros_like(MASK)
    logp, entropy = token_logprobs(model, IDS, ATTENTION, mask, with_entropy=True, chunk_size=4)
    assert (logp == 0).all() and (entropy == 0).all()
    logp.sum().backward()  # still connected to the model: a loss over it can backward


def test_no_grad_skips_checkpointing_and_agrees(tiny_model_dir):
    model = _model(tiny_model_dir)
    with torch.no_grad():
        logp, _ = token_logprobs(model, IDS, ATTENTION, MASK, chunk_size=4)
        want, _ = _full(model, 1.0)
    assert not logp.requires_grad and torch.allclose(logp, want, atol=1e-5)


def test_hidden_states_are_what_the_head_reads(tiny_model_dir):
    model = _model(tiny_model_dir)
    with torch.no_grad():
        hidden = final_hidden(model, IDS, ATTENTION)
        logits = model(input_ids=IDS, attention_mask=ATTENTION).logits
    assert torch.allclose(lm_head(model)(hidden), logits, atol=1e-5)


def test_wrappers_are_unwrapped_for_the_head(tiny_model_dir):
    from rankact.alignment.training.ppo.actor_critic import ActorCritic

    model = _model(tiny_model_dir)

    class Wrapper(torch.nn.Module):  # what DDP looks like: the model in `.module`, forward passed on
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    wrapped = Wrapper(model)
    assert unwrap(wrapped) is model and lm_head(wrapped) is model.get_output_embeddings()
    assert lm_head(Wrapper(ActorCritic(model))) is model.get_output_embeddings()
    logp, _ = token_logprobs(wrapped, IDS, ATTENTION, MASK, chunk_size=4)
    with torch.no_grad():
        want, _ = _full(model, 1.0)
    assert torch.allclose(logp, want, atol=1e-5)


def test_actor_critic_values_and_logprobs_from_one_pass(tiny_model_dir):
    from rankact.alignment.training.ppo.actor_critic import ActorCritic

    model = _model(tiny_model_dir)
    actor_critic = ActorCritic(model)
    hidden, values = actor_critic(IDS, ATTENTION)
    assert values.shape == IDS.shape
    logp, _ = hidden_logprobs(lm_head(actor_critic), hidden, IDS, MASK, temperature=0.7, chunk_size=4)
    with torch.no_grad():
        want, _ = _full(model, 0.7)
    assert torch.allclose(logp, want, atol=1e-5)


def test_gradient_checkpointing_keeps_gradients(tiny_model_dir):
    from rankact.alignment.training.policy import enable_gradient_checkpointing

    model = _model(tiny_model_dir).train()
    want = _grads(model, token_logprobs(model, IDS, ATTENTION, MASK, chunk_size=4)[0].sum())
    enable_gradient_checkpointing(model)
    got = _grads(model, token_logprobs(model, IDS, ATTENTION, MASK, chunk_size=4)[0].sum())
    for name, grad in got.items():
        assert torch.allclose(grad, want[name], atol=1e-5, rtol=1e-4), name
