"""The tool-use family: gold calls valid by construction, splits apart by tool, and a checker
that compares calls by meaning."""
from __future__ import annotations

from collections import Counter

import pytest

from rankact.alignment.tasks.tooluse import DEV_TOOLS, TEST_TOOLS, call_matches, calls_match, tool_tasks

jsonschema = pytest.importorskip("jsonschema")


@pytest.mark.parametrize("split", ["dev", "test"])
def test_every_gold_call_validates_against_its_tools_schema(split):
    tasks = tool_tasks(split)
    assert len(tasks) == 200
    assert len({(t.question, *sorted(x['name'] for x in t.tools)) for t in tasks}) == 200
    assert Counter(t.category for t in tasks) == {"single": 80, "choice": 50, "none": 40, "multi": 30}
    for task in tasks:
        offered = {tool["name"]: tool for tool in task.tools}
        assert {"single": 1, "choice": 1, "none": 0, "multi": 2}[task.category] == len(task.gold_calls)
        for call in task.gold_calls:
            jsonschema.validate(call["arguments"], offered[call["name"]]["parameters"])
        if task.category == "choice":
            assert 2 <= len(task.tools) <= 4


def test_splits_share_no_tool_and_are_reproducible():
    assert not {t.name for t in DEV_TOOLS} & {t.name for t in TEST_TOOLS}
    dev_names = {tool["name"] for task in tool_tasks("dev") for tool in task.tools}
    assert dev_names == {t.name for t in DEV_TOOLS}
    assert [t.question for t in tool_tasks("test")] == [t.question for t in tool_tasks("test")]


TOOLS = [DEV_TOOLS[0].schema(), DEV_TOOLS[4].schema()]  # get_weather, search_flights
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris"}}
FLIGHTS = {"name": "search_flights", "arguments": {"origin": "Oslo", "destination": "Lima",
                                                   "passengers": {"adults": 2}}}


@pytest.mark.parametrize(("call", "expected"), [
    (WEATHER, True),
    ({"name": "get_weather", "arguments": {"city": " paris "}}, True),  # strings by meaning
    ({"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 1}}, True),  # defaults
    ({"name": "get_weather", "arguments": {"city": "Paris", "days": 1.0}}, True),  # 1.0 is the integer 1
    ({"name": "get_weather", "arguments": {"city": "Paris", "days": "1"}}, False),  # a number as text
    ({"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}, False),
    ({"name": "get_weather", "arguments": {"city": "Paris", "country": "FR"}}, False),  # not a parameter
    ({"name": "get_weather", "arguments": {}}, False),  # required argument missing
    ({"name": "get_forecast", "arguments": {"city": "Paris"}}, False),
    ({"name": "get_weather", "arguments": "Paris"}, False),
])
def test_call_matches_by_meaning(call, expected):
    assert call_matches(call, WEATHER, TOOLS) is expected


def test_nested_objects_and_several_calls():
    nested = {"name": "search_flights", "arguments": {"origin": "oslo", "destination": "LIMA", "max_stops": 1,
                                                      "passengers": {"adults": 2, "children": 0}}}
    assert call_matches(nested, FLIGHTS, TOOLS)
    wrong = {"name": "search_flights", "arguments": {"origin": "Oslo", "destination": "Lima",
                                                     "passengers": {"adults": True}}}
    assert not call_matches(wrong, FLIGHTS, TOOLS)
    assert calls_match([FLIGHTS, WEATHER], [WEATHER, FLIGHTS], TOOLS)  # order-free
    assert not calls_match([WEATHER, WEATHER], [WEATHER, FLIGHTS], TOOLS)
    assert not calls_match([WEATHER], [WEATHER, FLIGHTS], TOOLS)
    assert calls_match([], [], TOOLS)  # no tool fits: no call is right
    assert not calls_match([WEATHER], [], TOOLS)
