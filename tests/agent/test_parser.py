"""The ReAct step parser: tolerant cases, strict cases, and a property test."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.parser import ParsedAction, ParsedFinal, ParseError, parse_step

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
