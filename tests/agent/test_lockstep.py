"""Lockstep batches on the tiny model: a batched call gives each row what the single-row call
gives (greedy exactly, sampling per seed whatever the batch make-up), and rows kept between
calls are reused."""
from __future__ import annotations

import pytest

from agent.llm import GenerationConfig
from agent.llm.local import TransformersLLM


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return TransformersLLM(tiny_model_dir)


def _prompts(llm):
    system = llm.encode("You are a careful assistant. Tools: calculator, search.\n")
    return [system + llm.encode(q) for q in ("What is 2+2?", "Who wrote Hamlet?", "Name a prime number.")]


def test_greedy_batch_equals_one_row_at_a_time(llm):
    prompts = _prompts(llm)
    configs = [GenerationConfig(max_new_tokens=n, stop=stop)
               for n, stop in ((12, ["\n"]), (5, []), (9, ["e", "a"]))]
    llm.clear_cache()
    batched = llm.continue_batch(prompts, configs)
    llm.clear_cache()
    single = [llm.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]
    for b, s in zip(batched, single, strict=True):
        assert (b.token_ids, b.text, b.finish_reason, b.stop_sequence) == (s.token_ids, s.text, s.finish_reason,
                                                                           s.stop_sequence)
        assert llm.decode(b.token_ids) == b.text
    assert batched[1].completion_tokens == 5 and batched[1].finish_reason == "length"


def test_sampled_rows_depend_only_on_their_seed(llm):
    prompts = _prompts(llm)
    config = [GenerationConfig(max_new_tokens=8, temperature=1.0, seed=s) for s in (11, 12, 13)]
    full = llm.continue_batch(prompts, config)
    alone = llm.continue_batch(prompts[1:2], config[1:2])
    reordered = llm.continue_batch([prompts[2], prompts[1]], [config[2], config[1]])
    assert full[1].token_ids == alone[0].token_ids == reordered[1].token_ids
    assert full[2].token_ids == reordered[0].token_ids
    assert llm.continue_ids(prompts[1], config[1]).token_ids == full[1].token_ids


def test_score_batch_equals_score_continuations(llm):
    prompts = _prompts(llm)
    options = [[llm.encode(" Action:"), llm.encode(" Final Answer:")], [llm.encode(" calculator")],
               [llm.encode(" yes"), llm.encode(" no, not at all"), llm.encode("\n")]]
    batched = llm.score_batch(prompts, options)
    for prompt, opts, scores in zip(prompts, options, batched, strict=True):
        assert scores == pytest.approx(llm.score_continuations(prompt, opts), abs=1e-4)


def test_rows_are_reused_across_calls(llm):
    llm.clear_cache()
    (prompt,) = _prompts(llm)[:1]
    first = llm.continue_batch([prompt], [GenerationConfig(max_new_tokens=4)])[0]
    grown = prompt + first.token_ids + llm.encode(" Observation: 4\n")
    rows = llm._lockstep_rows().start([grown])
    assert len(rows[0].ids) >= len(prompt) + len(first.token_ids) - 1  # only the new tokens are fed
