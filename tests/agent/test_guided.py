"""Guided decoding mechanics on the tiny random Llama (real tokenizer)."""
from __future__ import annotations

import asyncio

import pytest

from rankact.agent.guided import GuidedConfig, supports_guidance
from rankact.agent.llm.local import TransformersLLM
from rankact.agent.loop import Agent
from rankact.tools import tool
from rankact.tools.calculator import calculator

FAST = GuidedConfig(thought_max_tokens=6, input_max_tokens=6, answer_max_tokens=6)


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return TransformersLLM(tiny_model_dir)


@tool
def add(a: int, b: int, exact: bool) -> str:
    """Add two integers."""
    return str(a + b)


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return "nothing found"


def steer(llm, monkeypatch, prefer: dict[str, float]):
    """Make score_continuations prefer options by their decoded text; record prompts fed."""
    fed = []
    real_continue, real_score = llm.continue_ids, llm.score_continuations

    def score(prompt_ids, options):
        fed.append(list(prompt_ids))
        real_score(prompt_ids, options)  # still exercise the real scorer
        return [prefer.get(llm.decode(o), 0.0) for o in options]

    def cont(prompt_ids, config):
        fed.append(list(prompt_ids))
        return real_continue(prompt_ids, config)

    monkeypatch.setattr(llm, "score_continuations", score)
    monkeypatch.setattr(llm, "continue_ids", cont)
    return fed


def test_guidance_is_auto_on_for_local_backends(llm):
    assert supports_guidance(llm)
    assert Agent(llm, [calculator]).guided is True


def test_segments_are_exactly_the_ids_the_model_was_fed(llm, monkeypatch):
    fed = steer(llm, monkeypatch, {"\nAction:": 5.0, "\nFinal Answer:": 0.0, " lookup": 3.0})
    traj = Agent(llm, [calculator, lookup], max_steps=2, guided_config=FAST).run("What is 2+2?")
    all_ids = [i for s in traj.segments for i in s.token_ids]
    # Every model call saw a prefix of the one token list, in order, growing.
    assert fed and all(all_ids[: len(p)] == p for p in fed)
    assert [len(p) for p in fed] == sorted(len(p) for p in fed)
    # Segment texts decode from their ids (no re-tokenization across boundaries).
    assert llm.decode(all_ids) == traj.transcript()
    assert traj.segments[0].role == "prompt"
    assert traj.segments[0].text.endswith("<|im_start|>assistant\n")
    # Steered to always act with lookup: two steps, then the forced answer.
    assert [s.action for s in traj.steps[:2]] == ["lookup", "lookup"]
    assert traj.steps[2].forced_answer and traj.status == "max_steps"
    assert traj.parse_errors == 0


def test_forced_and_chosen_tokens_are_marked(llm, monkeypatch):
    steer(llm, monkeypatch, {"\nAction:": 5.0, " lookup": 3.0})
    traj = Agent(llm, [calculator, lookup], max_steps=1, guided_config=FAST).run("q")
    forced = "".join(s.text for s in traj.segments if s.role == "generated" and s.forced)
    chosen = "".join(s.text for s in traj.segments if s.role == "generated" and not s.forced)
    assert "Thought:" in forced and "Action Input:" in forced
    assert "\nFinal Answer:" in forced  # the max-steps answer was forced, not chosen
    # The model's own choices are trainable (not forced) text.
    assert "Action:" in chosen and " lookup" in chosen
    obs = [s for s in traj.segments if s.role == "observation"]
    assert obs and obs[0].text.startswith("\nObservation: nothing found")


def test_keyword_choice_follows_the_model_scores(llm, monkeypatch):
    steer(llm, monkeypatch, {"\nAction:": -9.0, "\nFinal Answer:": -1.0})
    traj = Agent(llm, [calculator], guided_config=FAST).run("q")
    assert traj.steps[0].action is None
    assert traj.status in ("finished", "error")  # error only if the random model wrote an empty answer
    if traj.status == "finished":
        assert traj.final_answer and traj.steps[0].raw.count("Final Answer:") == 1


def test_json_slots_for_multi_argument_tools(llm, monkeypatch):
    steer(llm, monkeypatch, {"\nAction:": 5.0, " true": 1.0})
    traj = Agent(llm, [add], max_steps=1, guided_config=FAST).run("1+2?")
    step = traj.steps[0]
    assert step.action == "add"
    # The structure was forced: keys in order, boolean chosen among true/false.
    assert '\nAction Input: {"a":' in step.raw and ', "b":' in step.raw and ', "exact": true}' in step.raw
    if step.error is None:
        assert set(step.action_input) == {"a", "b", "exact"}
    else:  # the random model wrote a non-number: a validation error observation, not a crash
        assert step.error.kind == "validation"


@pytest.mark.parametrize("mode", ["json", "plain"])
def test_single_string_tool_input_modes(llm, monkeypatch, mode):
    steer(llm, monkeypatch, {"\nAction:": 5.0})
    config = FAST.model_copy(update={"string_input": mode})
    traj = Agent(llm, [lookup], max_steps=1, guided_config=config).run("q")
    step = traj.steps[0]
    assert step.action == "lookup"
    assert isinstance(step.action_input, dict) and set(step.action_input) == {"query"}
    assert ('Action Input: {"query": "' in step.raw) == (mode == "json")


def test_sampling_with_a_seed_is_reproducible(llm):
    agent = Agent(llm, [calculator], max_steps=1, guided_config=FAST)
    a = agent.run("q", temperature=1.0, seed=11)
    b = agent.run("q", temperature=1.0, seed=11)
    c = agent.run("q", temperature=1.0, seed=12)
    ids = [[i for s in t.segments for i in s.token_ids] for t in (a, b, c)]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    assert a.sampling["seed"] == 11 and a.sampling["guided"] is True


def test_async_guided_run(llm):
    traj = asyncio.run(Agent(llm, [calculator], max_steps=1, guided_config=FAST).arun("q"))
    assert traj.steps and traj.segments[0].role == "prompt"
    assert traj.usage.llm_calls >= 2


def test_no_guided_on_local_backend_uses_chat_turns(llm):
    agent = Agent(llm, [calculator], max_steps=1, guided=False,
                  generation=Agent(llm).generation.model_copy(update={"max_new_tokens": 8}))
    traj = agent.run("q")
    assert traj.sampling["guided"] is False
    generated = [s for s in traj.segments if s.role == "generated"]
    assert generated and all(s.token_ids is not None for s in generated)
    for step in traj.steps:  # a step that failed to parse never supplies the answer
        if step.error is not None:
            assert step.final_answer is None and step.observation.startswith("Invalid format")
    assert traj.final_answer == next((s.final_answer for s in traj.steps if s.final_answer), None)


def test_first_line_length_keeps_leading_breaks_and_the_first_line_with_text():
    from rankact.agent.guided import first_line_length

    pieces = {1: "\n", 2: "\n", 3: "Paris", 4: " is", 5: "\n", 6: "more", 7: " x\n"}

    def decode(ids):
        return "".join(pieces[i] for i in ids)

    assert first_line_length([1, 2, 3, 4, 5, 6], decode) == 4  # "\n\nParis is"
    assert first_line_length([3, 7], decode) == 1  # a token carrying the break is left out
    assert first_line_length([1, 2], decode) == 2  # no text at all: nothing to cut
    assert first_line_length([3, 4], decode) == 2 and first_line_length([], decode) == 0


def test_an_answer_after_several_line_breaks_is_kept_not_an_empty_answer_error(llm, monkeypatch):
    """The embedded model wrote "Final Answer:" then line breaks; stopping at the first one
    (and again after one forced break) ended the step with an empty answer and, greedy, the
    same three times: the run ended in error. Now the first line with text is the answer."""
    from rankact.agent.llm import Completion

    steer(llm, monkeypatch, {"\nAction:": -9.0, "\nFinal Answer:": 0.0})
    real_continue = llm.continue_ids
    answer_calls = []

    def cont(prompt_ids, config):
        if not llm.decode(prompt_ids).endswith("Final Answer:") and not answer_calls:
            return real_continue(prompt_ids, config)  # the thought
        answer_calls.append(list(config.stop))
        if "\n" in config.stop:  # the model's first token is a line break: empty before the stop
            return Completion(text="", token_ids=[], finish_reason="stop", stop_sequence="\n")
        ids = llm.encode("\n\nParis is the capital\nAction: search")
        return Completion(text=llm.decode(ids), token_ids=ids, finish_reason="length")

    monkeypatch.setattr(llm, "continue_ids", cont)
    traj = Agent(llm, [calculator], max_steps=2, guided_config=FAST).run("Capital of France?")
    assert traj.status == "finished" and traj.parse_errors == 0
    assert traj.final_answer == "Paris is the capital"
    assert len(answer_calls) == 2 and "\n" not in answer_calls[1]
    last = [s for s in traj.segments if s.role == "generated"][-1]
    assert last.text.endswith("Final Answer:\n\nParis is the capital") and not last.forced
    assert "Action: search" not in traj.transcript()
    all_ids = [i for s in traj.segments for i in s.token_ids]
    assert llm.decode(all_ids) == traj.transcript()  # the cut tokens are not recorded
