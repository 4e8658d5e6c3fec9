"""Lockstep batches on the tiny model: a batched call gives each row what the single-row call
gives (greedy exactly, sampling per seed whatever the batch make-up), and rows kept between
calls are reused."""
from __future__ import annotations

import pytest

from rankact.agent.llm import GenerationConfig
from rankact.agent.llm.local import TransformersLLM


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


def _batch_of(llm, rows, spare_rows=0):
    from rankact.agent.llm.lockstep import Member, assemble_batch

    return assemble_batch(llm.model, llm.pad_id, llm._cache_arg, llm.device, [Member.of_row(r) for r in rows],
                          spare_rows=spare_rows)


def test_rows_leave_and_join_in_place_as_a_fresh_batch_would_hold_them(llm):
    import torch

    from rankact.agent.llm.lockstep import Member

    llm.clear_cache()
    prompts = _prompts(llm)
    longer = prompts[0] + llm.encode(" Thought: I should use the calculator to add two and two.")
    rows = llm._prefilled([list(p) for p in prompts + [longer]])
    with torch.inference_mode():
        batch = _batch_of(llm, rows[:3], spare_rows=2)
        buffer = batch.cache.layers[0].key_buffer.data_ptr()
        batch.feed([[p[-1]] for p in prompts])
        assert batch.retain([2, 0]) == [0, 2]  # row 1 left: the last row took its place
        assert batch.ids == [prompts[0], prompts[2]]
        assert batch.join([Member.of_row(rows[3])])  # longer than the batch: widens it, in place
        assert batch.cache.layers[0].key_buffer.data_ptr() == buffer
        assert len(batch) == 3 and batch.valid.shape[1] == len(longer) - 1
        reference = _batch_of(llm, [batch.row(i) for i in range(len(batch))])  # the same rows, freshly copied
        step = [llm.encode(" 4"), llm.encode(" 5"), [longer[-1]]]
        assert torch.allclose(batch.feed(step), reference.feed(step), atol=1e-4)
        assert not batch.join([Member.of_row(rows[1])] * 3)  # 2 spare rows left, not 3: the caller copies
        assert len(batch) == 3
        with pytest.raises(ValueError, match="distinct"):
            batch.retain([0, 0])


@pytest.mark.parametrize("in_place", [True, False])
def test_requests_joining_a_running_decode_get_what_they_get_alone(llm, in_place, monkeypatch):
    from rankact.agent.llm.local import DecodeSession

    monkeypatch.setattr(DecodeSession, "in_place", in_place)
    prompts = _prompts(llm)
    configs = [GenerationConfig(max_new_tokens=n) for n in (3, 10, 6)]
    llm.clear_cache()
    alone = [llm.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]
    llm.clear_cache()
    session = DecodeSession(llm)
    done = {}
    session.add(0, prompts[0], configs[0])
    session.add(1, prompts[1], configs[1])
    for _ in range(2):
        done.update(session.step())
    session.add(2, prompts[2], configs[2])  # joins mid-decode; request 0 leaves at the next step
    while len(session):
        done.update(session.step())
    assert [done[i].token_ids for i in range(3)] == [a.token_ids for a in alone]
