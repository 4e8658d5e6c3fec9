"""The ReAct step parser: tolerant cases, strict cases, and a property test."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.parser_speed import _PREVIOUS_FENCE, previous_clean_tool_name, previous_split_keywords
from rankact.agent import parser as parser_module
from rankact.agent.parser import ParsedAction, ParsedFinal, ParseError, parse_step

TOOLS = ["calculator", "search", "wiki_lookup"]


def action(text: str, tools=TOOLS) -> ParsedAction:
    step = parse_step(text, tools)
    assert isinstance(step, ParsedAction), step
    return step


def final(text: str) -> ParsedFinal:
    step = parse_step(text, TOOLS)
    assert isinstance(step, ParsedFinal), step
    return step


def test_plain_action_with_json_input():
    step = action('Thought: I need math.\nAction: calculator\nAction Input: {"expression": "17*23"}')
    assert step.thought == "I need math."
    assert step.action == "calculator"
    assert step.action_input == {"expression": "17*23"}


def test_trailing_spaces_after_tool_name():
    assert action('Action: calculator   \t\nAction Input: {"expression": "1"}').action == "calculator"


def test_newline_after_keywords():
    step = action('Thought:\nmath\nAction:\ncalculator\nAction Input:\n{"expression": "2+2"}')
    assert (step.thought, step.action, step.action_input) == ("math", "calculator", {"expression": "2+2"})


def test_fenced_json_input():
    text = 'Action: search\nAction Input: ```json\n{"query": "Eiffel tower"}\n```'
    assert action(text).action_input == {"query": "Eiffel tower"}


def test_fenced_code_plain_input():
    assert action("Action: calculator\nAction Input: ```\n3 * (4 + 5)\n```").action_input == "3 * (4 + 5)"


def test_single_quoted_dict():
    assert action("Action: search\nAction Input: {'query': 'Paris', 'k': 2}").action_input == {
        "query": "Paris",
        "k": 2,
    }


def test_prose_after_json():
    text = 'Action: calculator\nAction Input: {"expression": "9/3"} because division is needed'
    assert action(text).action_input == {"expression": "9/3"}


@pytest.mark.parametrize("suffix", ["\nObs", "\nObservation", "\nObservation:", "\nO", "\nObservation: 3"])
def test_truncated_or_hallucinated_observation(suffix):
    step = action('Action: calculator\nAction Input: {"expression": "1+2"}' + suffix)
    assert step.action_input == {"expression": "1+2"}


def test_hallucinated_observation_and_answer_are_dropped():
    text = 'Action: calculator\nAction Input: {"expression": "1+2"}\nObservation: 3\nFinal Answer: 3'
    assert action(text).action == "calculator"


def test_multiline_final_answer():
    step = final("Thought: done\nFinal Answer: line one\nline two\n")
    assert step.answer == "line one\nline two"
    assert step.thought == "done"


def test_tool_name_with_description_in_parentheses():
    assert action("Action: search (looks up passages)\nAction Input: {\"query\": \"x\"}").action == "search"


def test_non_ascii_tool_name():
    step = action('Action: 計算器\nAction Input: {"expr": "1+1"}', tools=["計算器", "búsqueda"])
    assert step.action == "計算器"
    assert action("Action: búsqueda\nAction Input: Madrid", tools=["búsqueda"]).action_input == "Madrid"


def test_case_insensitive_keywords_and_tool_names():
    step = action('THOUGHT: hm\naction: Calculator\naction input: {"expression": "5"}')
    assert (step.thought, step.action) == ("hm", "calculator")
    assert final("final answer: 42").answer == "42"


def test_missing_thought_prefix():
    step = action('I should compute this.\nAction: calculator\nAction Input: {"expression": "5-1"}')
    assert step.thought == "I should compute this."
    assert final("The answer is clear.\nFinal Answer: Paris").thought == "The answer is clear."


def test_markdown_bold_keywords():
    step = action('**Action:** calculator\n**Action Input:** {"expression": "7"}')
    assert step.action_input == {"expression": "7"}


def test_plain_text_input_and_quoted_string():
    assert action("Action: calculator\nAction Input: 17 * 23").action_input == "17 * 23"
    assert action('Action: calculator\nAction Input: "17 * 23"').action_input == "17 * 23"


def test_action_and_final_answer_together_is_an_error():
    with pytest.raises(ParseError) as info:
        parse_step('Action: calculator\nAction Input: {"expression": "1"}\nFinal Answer: 1', TOOLS)
    assert "not both" in info.value.hint


def test_missing_action_input_is_an_error():
    with pytest.raises(ParseError) as info:
        parse_step("Thought: x\nAction: calculator", TOOLS)
    assert "Action Input" in info.value.hint


def test_unknown_tool_lists_valid_tools():
    with pytest.raises(ParseError) as info:
        parse_step('Action: google\nAction Input: {"q": "x"}', TOOLS)
    assert "google" in info.value.message
    for name in TOOLS:
        assert name in info.value.hint


@pytest.mark.parametrize(
    "text",
    [
        "",
        "just some prose",
        "Thought: I am thinking",
        "Final Answer:   ",
        "Action Input: {\"a\": 1}",
        "Action: calculator\nAction Input: {not json",
        "Action: calculator\nAction Input: {'a': {1, 2}}",
        "Action:\nAction Input: {}",
        'Action: calculator\nAction Input: {"a": ' + "[" * 50000,
        "Action: calculator\nAction Input: {'a': " + "(" * 50000 + "}",
    ],
)
def test_malformed_steps_raise_parse_error_with_hint(text):
    with pytest.raises(ParseError) as info:
        parse_step(text, TOOLS)
    assert info.value.hint


_pieces = st.sampled_from(
    [
        "Thought:", "Action:", "Action Input:", "Final Answer:", "Observation:", "\n", " ", "{", "}", "'",
        '"', "```", "```json", "calculator", "search", "(", ")", "[", "]", "\\", "**", "Obs", ":", "{'a': 1}",
    ]
)
_text = st.lists(st.one_of(_pieces, st.text(max_size=8)), max_size=25).map("".join)


@settings(max_examples=400, deadline=None)
@given(_text)
def test_arbitrary_text_raises_only_parse_error(text):
    try:
        step = parse_step(text, TOOLS)
    except ParseError as exc:
        assert exc.hint
    else:
        assert isinstance(step, ParsedAction | ParsedFinal)
        if isinstance(step, ParsedAction):
            assert step.action in TOOLS
            assert isinstance(step.action_input, dict | str)


# ---- linear time (issue 15): the rewritten keyword search finds exactly what the previous
# (quadratic) patterns found; its speed on 100k-character inputs is bench/parser_speed.py's job.
_runs = st.sampled_from(["*", "**", " ", "\t", " \t", "***"]).flatmap(
    lambda unit: st.integers(0, 12).map(lambda n: unit * n))
_hostile = st.lists(st.one_of(_pieces, _runs, st.sampled_from(["final", "answer", "FINAL\tANSWER", "action input",
                                                               "Thought", "x", "a(b", "[q]", "\n"]),
                              st.text(max_size=4)), max_size=30).map("".join)


@settings(max_examples=500, deadline=None)
@given(_hostile)
def test_keyword_split_and_tool_name_match_the_previous_patterns(text):
    assert parser_module._split_keywords(text) == previous_split_keywords(text)
    assert parser_module._clean_tool_name(text) == previous_clean_tool_name(text)
    old, new = _PREVIOUS_FENCE.match(text), parser_module._FENCE.match(text)
    assert (old and old.group("body")) == (new and new.group("body"))


@pytest.mark.parametrize("text, expected", [
    ("** Thought:** hm\n**Action:** search", [("", ""), ("thought", " hm\n"), ("action", " search")]),
    ("x *** \tAction :** y", [("", "x "), ("action", " y")]),
    ("Action: a **Action Input:", [("", ""), ("action", "a "), ("action input", "")]),
    ("a*b Thought", [("", "a*b Thought")]),
])
def test_bold_and_spaces_before_a_keyword_belong_to_the_keyword(text, expected):
    assert parser_module._split_keywords(text) == expected


def test_the_keyword_pattern_cannot_start_inside_a_run_of_stars_or_spaces():
    # Structural: the pattern itself starts at the keyword word and never gives back a
    # quantifier, so no position can rescan a run; leading bold is found by one walk back.
    assert parser_module._KEYWORD.pattern.startswith(r"\b(")
    assert "]*+" in parser_module._KEYWORD.pattern and "\\**+" in parser_module._KEYWORD.pattern
    assert parser_module._KEYWORD.search("*" * 50 + " " * 50) is None


@pytest.mark.slow
def test_fuzz_100k_outputs_raise_only_parse_error():
    """The fuzz target of issue 15 at 100,000 seeded random outputs (about a minute)."""
    import random

    rng = random.Random(15)
    pieces = ["Thought:", "Action:", "Action Input:", "Final Answer:", "Observation:", "\n", " ", "\t", "*", "**",
              "{", "}", "'", '"', "```", "calculator", "search", "(", "[", "\\", "Obs", ":", "final", "{'a': 1}",
              '{"expression": "1+2"}', "\ud800", "é", "\x00"]
    for _ in range(100_000):
        text = "".join(rng.choice(pieces) * rng.choice((1, 1, 1, 2, 7, 40)) for _ in range(rng.randint(0, 20)))
        try:
            step = parse_step(text, TOOLS)
        except ParseError as exc:
            assert exc.hint
        else:
            assert isinstance(step, ParsedAction | ParsedFinal)
            if isinstance(step, ParsedAction):
                assert step.action in TOOLS
