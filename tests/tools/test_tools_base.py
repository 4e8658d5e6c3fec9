"""The @tool decorator and Tool: schema, validation, execution, timeouts, async."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

import pytest
from pydantic import BaseModel

from rankact.tools import (
    Tool,
    ToolArgumentError,
    ToolCitation,
    ToolError,
    ToolExecutionError,
    ToolResult,
    ToolTimeoutError,
    default_tools,
    get_builtin,
    tool,
)
from rankact.tools._docstring import parse_docstring


@tool
def search(query: str, k: int = 5, mode: Literal["dense", "hybrid"] = "hybrid") -> str:
    """Search the knowledge base.

    Returns the best passages.

    Args:
        query: what to look for,
            in plain words.
        k (int): how many passages to return.

    Returns:
        text of the hits.
    """
    return f"{query}|{k}|{mode}"


@tool(name="sleepy", description="Sleeps.", timeout=0.2)
def sleep_sync(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@tool(timeout=0.2)
async def sleep_async(seconds: float) -> str:
    """Sleep without blocking.

    :param seconds: how long to sleep
    :returns: "woke"
    """
    await asyncio.sleep(seconds)
    return "woke"


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


def test_schema_from_signature_and_google_docstring():
    schema = search.json_schema()
    assert schema["name"] == "search"
    assert schema["description"] == "Search the knowledge base.\n\nReturns the best passages."
    params = schema["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["properties"]["query"] == {"type": "string", "description": "what to look for, in plain words."}
    assert params["properties"]["k"] == {"type": "integer", "default": 5, "description": "how many passages to return."}
    assert params["properties"]["mode"]["enum"] == ["dense", "hybrid"]
    assert "title" not in json.dumps(params)


def test_schema_from_rest_docstring_and_explicit_name():
    assert sleep_async.json_schema()["parameters"]["properties"]["seconds"]["description"] == "how long to sleep"
    assert sleep_async.description == "Sleep without blocking."
    assert sleep_sync.name == "sleepy" and sleep_sync.description == "Sleeps."


def test_field_named_title_survives_title_stripping():
    @tool
    def note(title: str, body: str = "") -> str:
        """Write a note."""
        return title

    props = note.json_schema()["parameters"]["properties"]
    assert set(props) == {"title", "body"}


def test_docstring_parser_edge_cases():
    assert parse_docstring(None) == ("", {})
    summary, args = parse_docstring("""Do it.

    :param str name: the name
        continued here
    :param n: count
    :raises ValueError: never
    """)
    assert summary == "Do it."
    assert args == {"name": "the name continued here", "n": "count"}


def test_schema_hash_is_stable_and_changes_with_schema():
    @tool
    def search(query: str, k: int = 5, mode: Literal["dense", "hybrid"] = "hybrid") -> str:
        """Search the knowledge base.

        Returns the best passages.

        Args:
            query: what to look for, in plain words.
            k (int): how many passages to return.
        """
        return query

    other = search
    assert len(other.schema_hash) == 16
    int(other.schema_hash, 16)
    assert other.schema_hash == globals()["search"].schema_hash  # same schema, same hash

    @tool(name="search")
    def changed(query: str, k: int = 6, mode: Literal["dense", "hybrid"] = "hybrid") -> str:
        """Search the knowledge base.

        Returns the best passages.
        """
        return query

    assert changed.schema_hash != other.schema_hash


def test_single_string_input_and_plain_text():
    assert search.single_string_input  # one required str; optional ones may follow
    assert not sleep_sync.single_string_input
    assert search.invoke("capital of France").text == "capital of France|5|hybrid"
    assert search.invoke('"quoted"').text == "quoted|5|hybrid"
    assert search.invoke('{"query": "q", "k": 2}').text == "q|2|hybrid"
    assert search.invoke({"query": "q", "mode": "dense"}).text == "q|5|dense"


def test_validation_errors_list_fields_and_expectations():
    with pytest.raises(ToolArgumentError) as info:
        search.invoke({"k": "many", "extra": 1})
    msg = str(info.value)
    assert "search" in msg and "query" in msg and "k:" in msg and "extra" in msg
    assert '"query": str' in msg  # what was expected
    assert {tuple(e["loc"]) for e in info.value.errors} == {("query",), ("k",), ("extra",)}

    with pytest.raises(ToolArgumentError, match="expected a JSON object"):
        sleep_sync.invoke("1.5")  # not a single-string tool: plain text refused
    with pytest.raises(ToolArgumentError, match="got list"):
        sleep_sync.invoke([1, 2])
    assert search.invoke("[1, 2]").text.startswith("[1, 2]|")  # plain text for a single-string tool
    with pytest.raises(ToolArgumentError, match="mode"):
        search.invoke({"query": "q", "mode": "sparse"})


def test_validate_returns_the_model_and_coerces():
    args = sleep_sync.validate('{"seconds": "0.5"}')
    assert isinstance(args, BaseModel) and args.seconds == 0.5


def test_tool_exception_becomes_execution_error():
    with pytest.raises(ToolExecutionError) as info:
        explode.invoke({"reason": "boom"})
    assert str(info.value) == "ValueError: boom"
    assert isinstance(info.value.__cause__, ValueError)


def test_sync_timeout_returns_promptly():
    start = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="sleepy.*0.2"):
        sleep_sync.invoke({"seconds": 2})
    assert time.monotonic() - start < 1.0
    assert sleep_sync.invoke({"seconds": 0.01}).text == "woke"


def test_a_callers_timeout_cap_applies_only_where_it_is_tighter():
    # The agent's `tool_timeout` reaches tools as this cap: the one timeout layer, sync and async.
    @tool(timeout=None)
    def unlimited(seconds: float) -> str:
        """Sleeps."""
        time.sleep(seconds)
        return "woke"

    start = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="unlimited.* 0.1 s"):
        unlimited.invoke({"seconds": 2}, timeout_cap=0.1)
    with pytest.raises(ToolTimeoutError, match="sleepy.* 0.1 s"):
        sleep_sync.invoke({"seconds": 2}, timeout_cap=0.1)  # tighter than its own 0.2 s
    with pytest.raises(ToolTimeoutError, match="sleepy.* 0.2 s"):
        sleep_sync.invoke({"seconds": 2}, timeout_cap=60)  # a looser cap never extends it
    with pytest.raises(ToolTimeoutError, match=" 0.1 s"):
        asyncio.run(sleep_async.ainvoke({"seconds": 2}, timeout_cap=0.1))
    with pytest.raises(ToolTimeoutError, match=" 0.1 s"):
        asyncio.run(unlimited.ainvoke({"seconds": 2}, timeout_cap=0.1))
    assert time.monotonic() - start < 2.0
    assert unlimited.invoke({"seconds": 0.01}, timeout_cap=5).text == "woke"


def test_async_tool_sync_invoke_and_timeout():
    assert sleep_async.is_async and not sleep_sync.is_async
    assert sleep_async.invoke({"seconds": 0.01}).text == "woke"
    start = time.monotonic()
    with pytest.raises(ToolTimeoutError):
        sleep_async.invoke({"seconds": 2})
    assert time.monotonic() - start < 1.0


def test_ainvoke_and_invoke_inside_running_loop():
    async def main():
        assert (await sleep_async.ainvoke({"seconds": 0.01})).text == "woke"
        assert (await sleep_sync.ainvoke({"seconds": 0.01})).text == "woke"
        # blocking invoke from inside a running loop works for sync and async tools
        assert sleep_sync.invoke({"seconds": 0.01}).text == "woke"
        assert sleep_async.invoke({"seconds": 0.01}).text == "woke"
        with pytest.raises(ToolTimeoutError):
            await sleep_sync.ainvoke({"seconds": 2})
        with pytest.raises(ToolTimeoutError):
            await sleep_async.ainvoke({"seconds": 2})
        with pytest.raises(ToolExecutionError, match="ValueError: x"):
            await explode.ainvoke({"reason": "x"})
        # the loop stays responsive while a sync tool runs in its thread
        ticks = 0

        async def tick():
            nonlocal ticks
            for _ in range(5):
                await asyncio.sleep(0.01)
                ticks += 1

        await asyncio.gather(sleep_sync.ainvoke({"seconds": 0.15}), tick())
        assert ticks == 5

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 2.0  # the hung threads did not block loop shutdown


def test_results_are_normalised_and_citations_kept():
    @tool
    def numbers() -> list[int]:
        """Numbers."""
        return [1, 2]

    @tool
    def cited(q: str) -> ToolResult:
        """Cited."""
        return ToolResult(text=q, citations=[ToolCitation(chunk_id="c1", source="doc.txt")])

    assert numbers.invoke(None).text == "[1, 2]"
    assert numbers.invoke("").text == "[1, 2]"
    result = cited.invoke("hi")
    assert result.text == "hi" and result.citations[0].chunk_id == "c1"
    assert numbers() == [1, 2]  # still callable as a function


def test_render_signature():
    assert search.render_signature() == (
        "search(query: str, k: int = 5, mode: 'dense' | 'hybrid' = 'hybrid') - "
        "Search the knowledge base. Returns the best passages."
    )
    assert sleep_sync.render_signature() == "sleepy(seconds: float) - Sleeps."


def test_tool_subclass_stateful():
    class CounterArgs(BaseModel):
        step: int = 1

    class Counter(Tool):
        name = "counter"
        description = "Counts."
        args_model = CounterArgs

        def __init__(self):
            self.value = 0

        def run(self, step: int) -> str:
            self.value += step
            return str(self.value)

    counter = Counter()
    assert counter.invoke({"step": 2}).text == "2"
    assert counter.invoke(None).text == "3"
    assert counter.json_schema()["parameters"]["properties"]["step"]["default"] == 1
    assert not counter.single_string_input

    class AsyncEcho(Tool):
        name = "echo"
        args_model = CounterArgs

        async def arun(self, step: int) -> str:
            return f"echo {step}"

    assert AsyncEcho().is_async and AsyncEcho().invoke({"step": 4}).text == "echo 4"
    assert asyncio.run(AsyncEcho().ainvoke({})).text == "echo 1"


def test_unsupported_signatures_are_refused_at_decoration():
    with pytest.raises(TypeError, match=r"\*args"):
        @tool
        def bad(*values: int) -> int:
            return 0


def test_builtins_registry():
    assert [t.name for t in default_tools()] == ["calculator"]
    assert get_builtin("calculator").name == "calculator"
    assert get_builtin("http_get").name == "http_get"
    assert get_builtin("http_get", allow_private=True).allow_private
    with pytest.raises(KeyError, match="unknown built-in"):
        get_builtin("shell")
    assert issubclass(ToolTimeoutError, ToolError) and issubclass(ToolArgumentError, ToolError)


def test_argument_names_that_clash_with_basemodel_keep_their_names():
    @tool
    def fetch(json: str, schema: int = 1, model_name: str = "m") -> str:
        """Fetch."""
        return f"{json}|{schema}|{model_name}"

    assert list(fetch.json_schema()["parameters"]["properties"]) == ["json", "schema", "model_name"]
    assert fetch.invoke({"json": "a", "schema": 2, "model_name": "x"}).text == "a|2|x"
    assert fetch.single_string_input and fetch.invoke("plain").text == "plain|1|m"
    with pytest.raises(ToolArgumentError, match="json: Input should be a valid string"):
        fetch.invoke({"json": 3})
