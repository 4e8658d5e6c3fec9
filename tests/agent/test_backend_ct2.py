"""The CTranslate2 engine on the tiny random Llama, converted in float32 so that its
numbers can be held against PyTorch's (int8 is checked on the real model, marked slow)."""
from __future__ import annotations

import pytest

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm import GenerationConfig, LocalLLM, as_messages
from rankact.agent.llm.local import TransformersLLM

pytest.importorskip("ctranslate2")

from rankact.agent.llm.ct2 import MIN_PREFIX, CTranslate2LLM
from rankact.agent.llm.parity import mean_logprob_gap

PROMPT = as_messages("Tell me something.")


@pytest.fixture(scope="module")
def ct2_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ct2-cache")


@pytest.fixture(scope="module")
def llm(tiny_model_dir, ct2_cache):
    return CTranslate2LLM(tiny_model_dir, quantization="float32", cache_dir=ct2_cache)


@pytest.fixture(scope="module")
def ref(tiny_model_dir):
    return TransformersLLM(tiny_model_dir)


def sampled(llm, seed=7, tokens=16, **kw):
    return llm.generate(PROMPT, GenerationConfig(max_new_tokens=tokens, temperature=1.0, seed=seed, **kw))


def prompt_ids(llm, repeat=1):
    return llm.encode(llm.render_prompt(PROMPT)) * repeat


def test_implements_the_local_protocol_and_reports_its_weights(llm, ref, tiny_model_dir):
    assert isinstance(llm, LocalLLM)
    assert llm.info.backend == "ctranslate2" and llm.info.name == tiny_model_dir.name
    assert llm.info.revision == ref.info.revision
    assert llm.render_prompt(PROMPT) == ref.render_prompt(PROMPT)


def test_conversion_is_cached_and_a_corrupt_cache_is_rebuilt(tiny_model_dir, tmp_path):
    first = CTranslate2LLM(tiny_model_dir, quantization="float32", cache_dir=tmp_path)
    assert first.conversion_seconds > 0
    again = CTranslate2LLM(tiny_model_dir, quantization="float32", cache_dir=tmp_path)
    assert again.conversion_seconds == 0.0 and again.model_dir == first.model_dir
    weights = first.model_dir / "model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated write
    rebuilt = CTranslate2LLM(tiny_model_dir, quantization="float32", cache_dir=tmp_path)
    assert rebuilt.conversion_seconds > 0 and (first.model_dir / "model.bin").stat().st_size > 1000
    (first.model_dir / "complete.json").unlink()  # a conversion that never finished
    assert CTranslate2LLM(tiny_model_dir, quantization="float32", cache_dir=tmp_path).conversion_seconds > 0
    assert [p.name for p in tmp_path.iterdir()] == [first.model_dir.name]  # no staging left behind


def test_bad_models_raise_model_load_errors(tmp_path):
    with pytest.raises(ModelLoadError):
        CTranslate2LLM(tmp_path / "nope", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="quantization"):
        CTranslate2LLM("default", quantization="int3", cache_dir=tmp_path)


def test_greedy_matches_pytorch(llm, ref):
    ids = prompt_ids(llm)
    config = GenerationConfig(max_new_tokens=10)
    assert llm.continue_ids(ids, config).token_ids == ref.continue_ids(ids, config).token_ids


def test_greedy_batch_equals_batch_of_one(llm):
    short, long = prompt_ids(llm), prompt_ids(llm, repeat=4)
    assert len(long) > MIN_PREFIX  # exercises the cached static prefix
    prompts = [long, short, long[:-2], long, short[:-1] + [short[0]]]
    configs = [GenerationConfig(max_new_tokens=n, stop=s) for n, s in
               [(8, []), (6, []), (8, ["zz"]), (3, []), (8, [])]]
    batch = llm.continue_batch(prompts, configs)
    llm.clear_cache()
    alone = [llm.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]
    assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
    assert [len(c.token_ids) for c in batch][3] == 3


def test_stop_strings_cut_exactly_and_ids_decode_to_the_text(llm):
    full = sampled(llm)
    ends = [len(llm.decode(full.token_ids[:i])) for i in range(len(full.token_ids) + 1)]
    for j in range(2, len(full.token_ids) - 2):  # a stop starting on a token boundary, spanning 2 tokens
        stop = full.text[ends[j]: ends[j + 2]]
        if stop.strip() and full.text.find(stop) == ends[j] and ends[j + 1] > ends[j]:
            break
    else:
        pytest.skip("no suitable stop string in this sample")
    cut = sampled(llm, stop=["never-appears", stop])
    assert cut.finish_reason == "stop" and cut.stop_sequence == stop
    assert cut.token_ids == full.token_ids[:j] and cut.text == full.text[: ends[j]]
    assert llm.decode(cut.token_ids) == cut.text and cut.completion_tokens == j + 2
    mid = full.text[ends[j] + 1: ends[j + 2]]  # starts inside token j: that token is dropped
    if mid and full.text.find(mid) == ends[j] + 1:
        cut = sampled(llm, stop=[mid])
        assert cut.token_ids == full.token_ids[:j] and llm.decode(cut.token_ids) == cut.text


def test_end_of_sequence_ends_with_stop_and_is_not_kept(llm):
    full = sampled(llm, tokens=12)
    k = next(i for i in range(2, len(full.token_ids)) if full.token_ids[i] not in full.token_ids[:i])
    saved = llm.eos_ids
    llm.eos_ids = {full.token_ids[k]}  # pretend token k is the end-of-sequence token
    try:
        c = sampled(llm, tokens=12)
    finally:
        llm.eos_ids = saved
    assert c.finish_reason == "stop" and c.stop_sequence is None
    assert c.token_ids == full.token_ids[:k] and c.text == llm.decode(c.token_ids)


def test_seeded_sampling_is_reproducible_per_row(llm):
    a, b, c = sampled(llm, seed=3), sampled(llm, seed=3), sampled(llm, seed=4)
    assert a.token_ids == b.token_ids != c.token_ids
    rows = llm.sample(PROMPT, GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3), 3)
    assert [r.token_ids for r in rows] == [sampled(llm, seed=s).token_ids for s in (3, 4, 5)]
    # whatever else is in the batch
    ids = prompt_ids(llm)
    mixed = llm.continue_batch([ids, ids, ids], [GenerationConfig(max_new_tokens=16),
                                                 GenerationConfig(max_new_tokens=16, temperature=1.0, seed=4),
                                                 GenerationConfig(max_new_tokens=5, temperature=1.0)])
    assert mixed[1].token_ids == c.token_ids and len(mixed[2].token_ids) == 5


def test_unseeded_sampling_batches_rows(llm):
    rows = llm.sample(PROMPT, GenerationConfig(max_new_tokens=8, temperature=1.0), 4)
    assert all(r.completion_tokens == 8 and llm.decode(r.token_ids) == r.text for r in rows)
    assert len({tuple(r.token_ids) for r in rows}) > 1


def test_stream_pieces_join_to_the_completion(llm):
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=9, stop=["e"])
    assert "".join(llm.stream(PROMPT, config)) == llm.generate(PROMPT, config).text
    greedy = GenerationConfig(max_new_tokens=8)
    assert "".join(llm.stream(PROMPT, greedy)) == llm.generate(PROMPT, greedy).text


def test_scores_match_a_pytorch_teacher_forced_forward(llm, ref):
    short, long = prompt_ids(llm), prompt_ids(llm, repeat=4)
    options = [[300, 301, 302], [7], [], [9, 9]]
    ours = llm.score_batch([short, long], [options, options[:2]])
    theirs = [ref.score_continuations(short, options), ref.score_continuations(long, options[:2])]
    for a, b in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    assert llm.score_continuations(long, options[:2]) == pytest.approx(ours[1], abs=1e-5)
    with pytest.raises(ValueError):
        llm.score_continuations([], options)


def test_log_prob_gap_to_pytorch_is_tiny_in_float32(llm, ref):
    ids = prompt_ids(llm, repeat=2) + sampled(llm).token_ids
    assert mean_logprob_gap(llm, ref.model, ids) < 1e-4


def test_guided_agent_runs_full_steps(llm):
    from rankact.agent.guided import GuidedConfig
    from rankact.agent.loop import Agent
    from rankact.tools.calculator import calculator

    agent = Agent(llm, [calculator], max_steps=1, guided_config=GuidedConfig(
        thought_max_tokens=6, input_max_tokens=6, answer_max_tokens=6))
    assert agent.guided
    traj = agent.run("What is 2+2?")
    all_ids = [i for s in traj.segments for i in s.token_ids]
    assert traj.steps and llm.decode(all_ids) == traj.transcript() and traj.parse_errors == 0
    assert traj.model.backend == "ctranslate2"
    a, b = (agent.run("q", temperature=1.0, seed=11) for _ in range(2))
    assert [s.token_ids for s in a.segments] == [s.token_ids for s in b.segments]


def test_load_llm_picks_the_engine(tiny_model_dir, tmp_path, monkeypatch):
    from rankact.agent.llm.loading import load_llm

    monkeypatch.setenv("RANKACT_CACHE", str(tmp_path))
    assert isinstance(load_llm(str(tiny_model_dir)), TransformersLLM)  # the default: the trained model, exact
    assert isinstance(load_llm(str(tiny_model_dir), engine="auto"), CTranslate2LLM)  # ctranslate2 is installed
    assert isinstance(load_llm(str(tiny_model_dir), engine="ctranslate2"), CTranslate2LLM)
    assert isinstance(load_llm(str(tiny_model_dir), engine="torch"), TransformersLLM)
    assert isinstance(load_llm(str(tiny_model_dir), device="cpu", dtype="float32"), TransformersLLM)
    with pytest.raises(ModelLoadError, match="engine"):
        load_llm(str(tiny_model_dir), engine="vllm")


@pytest.mark.slow
def test_int8_embedded_model_greedy_batches_and_stays_close_to_pytorch(embedded_model_dir):
    llm = CTranslate2LLM(embedded_model_dir)
    ref = TransformersLLM(embedded_model_dir)
    ids = llm.encode(llm.render_prompt(as_messages("Name three colours.")))
    config = GenerationConfig(max_new_tokens=12)
    batch = llm.continue_batch([ids, ids[:-1] + ids[-1:], ids * 2], [config] * 3)
    llm.clear_cache()
    assert [c.token_ids for c in batch] == [llm.continue_ids(p, config).token_ids for p in (ids, ids, ids * 2)]
    text = ids + batch[0].token_ids
    assert mean_logprob_gap(llm, ref.model, text) < 0.6  # int8 weights: ~0.37 nats/token measured
