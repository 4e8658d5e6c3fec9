"""The local transformers backend, on a tiny random Llama (gibberish, but deterministic
under a seed, which is all stop cutting and sampling need)."""
from __future__ import annotations

import pytest
import torch

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm import GenerationConfig, LocalLLM, as_messages
from rankact.agent.llm.local import TransformersLLM, cut_at

PROMPT = as_messages("Tell me something.")


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return TransformersLLM(tiny_model_dir)


def sampled(llm, seed=7, tokens=16, **kw):
    return llm.generate(PROMPT, GenerationConfig(max_new_tokens=tokens, temperature=1.0, seed=seed, **kw))


def boundaries(llm, ids):
    """Character offset of the end of each token prefix: ends[i] = len(decode(ids[:i]))."""
    return [len(llm.decode(ids[:i])) for i in range(len(ids) + 1)]


def test_implements_the_local_protocol_and_reports_its_weights(llm, tiny_model_dir):
    assert isinstance(llm, LocalLLM)
    assert llm.info.backend == "transformers" and llm.info.name == tiny_model_dir.name
    assert llm.info.revision and len(llm.info.revision) == 12
    assert not llm.model.training


def test_render_prompt_applies_the_chat_template(llm):
    text = llm.render_prompt(as_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]))
    assert text.startswith("<|im_start|>system\nS<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    assert llm.encode("hello world") == llm.tokenizer("hello world", add_special_tokens=False)["input_ids"]


def test_unconstrained_completion_runs_to_length_and_ids_match_text(llm):
    c = sampled(llm, tokens=12)
    assert c.finish_reason == "length" and c.stop_sequence is None
    assert c.completion_tokens == len(c.token_ids) == 12
    assert c.prompt_tokens == len(llm.encode(llm.render_prompt(PROMPT)))
    assert llm.decode(c.token_ids) == c.text and c.seconds > 0


def test_greedy_matches_transformers_generate(llm):
    ids = llm.encode(llm.render_prompt(PROMPT))
    ours = llm.continue_ids(ids, GenerationConfig(max_new_tokens=10))
    with torch.inference_mode():
        ref = llm.model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                                 eos_token_id=None, pad_token_id=llm.pad_id)
    ref_ids = ref[0, len(ids):].tolist()
    assert ours.token_ids == ref_ids[: len(ours.token_ids)]
    assert len(ours.token_ids) == 10 or ours.finish_reason == "stop"


def test_stop_starting_on_a_token_boundary_and_spanning_tokens(llm):
    full = sampled(llm)
    ends = boundaries(llm, full.token_ids)
    # a stop string that starts exactly where token j starts and runs over >= 2 tokens
    for j in range(2, len(full.token_ids) - 2):
        stop = full.text[ends[j]: ends[j + 2]]
        if stop.strip() and full.text.find(stop) == ends[j] and ends[j + 1] > ends[j]:
            break
    else:
        pytest.skip("no suitable stop string in this sample")
    cut = sampled(llm, stop=["never-appears", stop])
    assert cut.finish_reason == "stop" and cut.stop_sequence == stop
    assert cut.text == full.text[: ends[j]]
    assert cut.token_ids == full.token_ids[:j]
    assert llm.decode(cut.token_ids) == cut.text
    assert cut.completion_tokens == j + 2  # generation stopped as soon as the stop was complete


def test_stop_starting_mid_token_drops_that_whole_token(llm):
    full = sampled(llm)
    ends = boundaries(llm, full.token_ids)
    for j in range(2, len(full.token_ids) - 2):
        if ends[j + 1] - ends[j] >= 3:  # token j has >= 3 characters: start the stop inside it
            start = ends[j] + 1
            stop = full.text[start: ends[j + 2]]
            if full.text.find(stop) == start:
                break
    else:
        pytest.skip("no multi-character token in this sample")
    cut = sampled(llm, stop=[stop])
    assert cut.token_ids == full.token_ids[:j]
    assert cut.text == llm.decode(cut.token_ids) == full.text[: ends[j]]
    assert stop not in cut.text and cut.stop_sequence == stop


def test_earliest_stop_wins(llm):
    full = sampled(llm)
    ends = boundaries(llm, full.token_ids)
    late, early = full.text[ends[8]: ends[9]], full.text[ends[3]: ends[4]]
    if not early or full.text.find(early) != ends[3] or not late:
        pytest.skip("sample repeats itself")
    cut = sampled(llm, stop=[late, early])
    assert cut.stop_sequence == early and cut.text == full.text[: ends[3]]


def test_cut_at_rule(llm):
    ids = llm.encode("Thought: look it up\nObservation: none")
    text = llm.decode(ids)
    k = text.index("Observation:")
    m, kept = cut_at(llm.tokenizer, ids, text, k)
    assert kept == llm.decode(ids[:m]) == "Thought: look it up\n"
    m, kept = cut_at(llm.tokenizer, ids, text, text.index("up") + 1)  # inside the token " up"
    assert kept == "Thought: look it"


def test_stream_pieces_join_to_generate_text(llm):
    full = sampled(llm)
    ends = boundaries(llm, full.token_ids)
    stop = full.text[ends[6] + 1: ends[8]] or full.text[ends[6]: ends[8]]
    cfg = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=7, stop=[stop])
    pieces = list(llm.stream(PROMPT, cfg))
    assert len(pieces) > 1
    assert "".join(pieces) == llm.generate(PROMPT, cfg).text
    plain = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=7)
    assert "".join(llm.stream(PROMPT, plain)) == full.text


def test_seeded_sampling_is_reproducible(llm):
    a, b, c = sampled(llm, seed=1), sampled(llm, seed=1), sampled(llm, seed=2)
    assert a.token_ids == b.token_ids and a.text == b.text
    assert a.token_ids != c.token_ids


def test_sample_batches_n_rows_with_seed_plus_i(llm):
    cfg = GenerationConfig(max_new_tokens=12, temperature=1.0, seed=5)
    rows = llm.sample(PROMPT, cfg, 3)
    assert len(rows) == 3 and len({tuple(r.token_ids) for r in rows}) == 3
    assert all(llm.decode(r.token_ids) == r.text for r in rows)
    assert rows[1].token_ids == llm.generate(PROMPT, cfg.model_copy(update={"seed": 6})).token_ids
    assert [r.token_ids for r in llm.sample(PROMPT, cfg, 3)] == [r.token_ids for r in rows]


def test_greedy_sample_returns_n_identical_rows(llm):
    rows = llm.sample(PROMPT, GenerationConfig(max_new_tokens=6), 3)
    assert len(rows) == 3 and rows[0].token_ids == rows[1].token_ids == rows[2].token_ids


def test_top_p_tiny_keeps_only_the_top_token(llm):
    greedy = llm.generate(PROMPT, GenerationConfig(max_new_tokens=8))
    nucleus = llm.generate(PROMPT, GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=3))
    assert nucleus.token_ids == greedy.token_ids


def test_score_continuations_matches_separate_forward_passes(llm):
    prompt = llm.encode("The capital of France is")
    options = [llm.encode(" Paris"), llm.encode(" a big city in Europe"), []]
    scores = llm.score_continuations(prompt, options)
    for opt, score in zip(options[:2], scores):
        with torch.inference_mode():
            logits = llm.model(torch.tensor([prompt + opt])).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        expected = sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(opt))
        assert score == pytest.approx(expected, abs=1e-3)
    assert scores[2] == 0.0 and scores[0] < 0


def fresh_continue(llm, ids, config):
    llm.clear_cache()
    return llm.continue_ids(ids, config)


def test_prefix_cache_reuse_gives_the_same_tokens_as_a_fresh_run(llm):
    greedy = GenerationConfig(max_new_tokens=8)
    prompt = llm.encode(llm.render_prompt(PROMPT))
    first = fresh_continue(llm, prompt, greedy)
    # the agent's pattern: previous ids + what was generated + an observation
    longer = prompt + first.token_ids + llm.encode("\nObservation: 42\n")
    seen = []
    hook = llm.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape[1]),
                                               with_kwargs=True)
    try:
        reused = llm.continue_ids(longer, greedy)
    finally:
        hook.remove()
    assert seen[0] <= len(longer) - len(prompt)  # only the new tokens were run
    assert reused.token_ids == fresh_continue(llm, longer, greedy).token_ids
    # a prompt diverging early (shorter common prefix) and an identical prompt again
    other = prompt[:5] + llm.encode(" something else entirely")
    llm.continue_ids(longer, greedy)
    assert llm.continue_ids(other, greedy).token_ids == fresh_continue(llm, other, greedy).token_ids
    llm.continue_ids(other, greedy)
    assert llm.continue_ids(other, greedy).token_ids == fresh_continue(llm, other, greedy).token_ids


def test_prefix_cache_is_dropped_when_the_weights_change(tiny_model_dir):
    own = TransformersLLM(tiny_model_dir)
    greedy = GenerationConfig(max_new_tokens=6)
    prompt = own.encode(own.render_prompt(PROMPT))
    own.continue_ids(prompt, greedy)
    key = own._weights_key()
    with torch.no_grad():
        for p in own.model.parameters():
            p.mul_(1.5)  # an optimizer step: in place
    assert own._weights_key() != key
    after = own.continue_ids(prompt, greedy)
    assert after.token_ids == fresh_continue(own, prompt, greedy).token_ids


def test_cached_scoring_matches_plain_scoring_and_feeds_the_next_call(llm):
    prompt = llm.encode(llm.render_prompt(PROMPT)) + llm.encode("Action:")
    options = [llm.encode(" search"), llm.encode(" calculator"), llm.encode(" Final Answer: the long one"),
               llm.encode("x")]
    plain = llm._score_plain(prompt, options)
    llm.clear_cache()
    cached = llm.score_continuations(prompt, options)  # cold: the whole prompt runs once, batch 1
    assert cached == pytest.approx(plain, abs=1e-3)
    assert llm._prefix is not None and llm._prefix[0].fed == prompt
    again = llm.score_continuations(prompt + options[0], [llm.encode(" now"), llm.encode(" later")])
    assert again == pytest.approx(llm._score_plain(prompt + options[0], [llm.encode(" now"), llm.encode(" later")]),
                                  abs=1e-3)
    single = llm.score_continuations(prompt, [[5], [6]])  # one-token options: no second pass
    assert single == pytest.approx(llm._score_plain(prompt, [[5], [6]]), abs=1e-3)
    # the choice is followed by generation that reuses the scored prompt
    chosen = prompt + options[1]
    assert llm.continue_ids(chosen, GenerationConfig(max_new_tokens=5)).token_ids == \
        fresh_continue(llm, chosen, GenerationConfig(max_new_tokens=5)).token_ids


def test_wraps_an_in_memory_model_without_copying_and_restores_training_mode(llm):
    model, tok = llm.model, llm.tokenizer
    model.train()
    try:
        wrapped = TransformersLLM.from_pretrained_objects(model, tok, name="policy")
        assert wrapped.model is model and wrapped.info.name == "policy" and wrapped.info.revision is None
        c = wrapped.generate(PROMPT, GenerationConfig(max_new_tokens=3))
        assert len(c.token_ids) == 3 and model.training
    finally:
        model.eval()


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="model path not found"):
        TransformersLLM(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        TransformersLLM(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="not a model"):
        TransformersLLM(tmp_path / "notes.txt")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really" * 50)
    with pytest.raises(ModelLoadError, match="not a loadable GGUF") as info:
        TransformersLLM(bad)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_base_model_answers_greedily():
    # The untuned model: the shipped adapter was trained on arithmetic agent runs only, and plain
    # chat answers of `default` drift (see docs/model-card.md).
    llm = TransformersLLM("base")
    c = llm.generate(as_messages("What is the capital of France?"), GenerationConfig(max_new_tokens=16))
    assert llm.info.name == "SmolLM2-135M-Instruct" and llm.info.revision
    assert c.text.strip() and "Paris" in c.text
    assert llm.decode(c.token_ids) == c.text
