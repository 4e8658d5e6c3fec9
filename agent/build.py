"""`build_agent`: the one way an agent is assembled from a model, tool names and an index.

`rankact ask`, `collect`, `eval`, the demo, PPO rollouts and the benches all call it (tasks
through `rankact.alignment.tasks.agents.TaskAgents`, which picks each task's tools), so they share
the tools, the `max_steps` default and one-line errors for a bad index or a missing tool.

Tools by name: `calculator` (always available), `search` (needs a retriever or an index
folder), and the other built-ins (`http_get`, `read_file`) when a task names them. With no
names the agent gets every tool available without configuration: the calculator, plus
search when there is an index. `extra_tools` (Tool objects, e.g. an MCP server's) are added to
whichever set is chosen, so `--mcp` gives every task of `collect` and `eval` the server's tools.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankact.agent.errors import RankactError
from rankact.agent.guided import supports_guidance
from rankact.agent.loop import DEFAULT_MAX_STEPS, Agent
from rankact.agent.native_tools import supports_native

__all__ = ["DEFAULT_MAX_STEPS", "FORMATS", "AgentSetupError", "agent_format", "build_agent", "load_index",
           "make_tools"]

# The agent's tool-calling format: "react" (Thought/Action text, every backend), "native" (the
# server's own tool calls, OpenAI-compatible chat servers), "auto" (native where declared).
FORMATS = ("auto", "react", "native")


class AgentSetupError(RankactError):
    """A bad index folder, or a tool the agent cannot have here."""


def load_index(path: str | Path) -> Any:
    """A `retrieval.Retriever` from an index folder; anything wrong is one line naming it."""
    from rankact.retrieval import Retriever

    path = Path(path)
    if not path.exists():
        raise AgentSetupError(f"index folder not found: {path} (build one with `rankact index build`)")
    if not path.is_dir():
        raise AgentSetupError(f"not an index folder: {path} is a file (build one with `rankact index build`)")
    try:
        return Retriever.load(path)
    except Exception as exc:  # noqa: BLE001 - a damaged folder can fail in many libraries; one line each
        detail = " ".join(str(exc).split()) or exc.__class__.__name__
        raise AgentSetupError(f"cannot load index {path}: {detail}") from None


def make_tools(names: Sequence[str | Any] | None = None, retriever: Any = None, *, search_k: int = 3,
               search_mode: str = "hybrid") -> list[Any]:
    """Tools by name (or Tool objects, kept as they are), in the order given."""
    from rankact.tools import builtin_names, calculator, get_builtin

    if names is None:
        names = ["calculator", "search"] if retriever is not None else ["calculator"]
    tools = []
    for name in names:
        if not isinstance(name, str):
            tools.append(name)  # already a Tool
        elif name == "calculator":
            tools.append(calculator)
        elif name == "search":
            if retriever is None:
                raise AgentSetupError("the search tool is not available here: search needs an index (--index)")
            from rankact.tools.search import SearchTool

            tools.append(SearchTool(retriever, k=search_k, mode=search_mode))
        elif name in builtin_names():
            tools.append(get_builtin(name))
        else:
            raise AgentSetupError(f"unknown tool {name!r}; available: {', '.join(builtin_names())}")
    return tools


def agent_format(llm: Any, format: str = "auto") -> str:
    """"react" or "native" for this backend: native where the backend declares native tool
    calling (`native_tools`: OpenAI-compatible chat servers), text ReAct for the rest (local,
    guided, scripted, and servers driven with token ids)."""
    if format not in FORMATS:
        raise AgentSetupError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if format == "native" and not supports_native(llm):
        raise AgentSetupError("--format native needs an OpenAI-compatible chat server (--model http://.../v1, "
                              "without --tokenizer); this backend runs the text ReAct format (--format react)")
    if format == "auto":
        return "native" if supports_native(llm) else "react"
    return format


def build_agent(
    llm: Any,
    *,
    tools: Sequence[str | Any] | None = None,
    extra_tools: Sequence[Any] = (),
    retriever: Any = None,
    index: str | Path | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    search_k: int = 3,
    search_mode: str = "hybrid",
    format: str = "auto",
    **agent_options: Any,
) -> Agent:
    """An `Agent` over `llm` with `tools` (names or Tool objects; None: every available tool).
    `extra_tools` are appended to them (tools.mcp's, for instance).
    `index` is an index folder (loaded here) or pass a loaded `retriever`. Other options go to
    `Agent` (guided, generation, tool_timeout, ...); guided decoding is on where the backend
    allows it unless `guided=False`. `format` is `agent_format`'s (native: no guided decoding)."""
    if index is not None and retriever is None:
        retriever = load_index(index)
    chosen = make_tools(tools, retriever, search_k=search_k, search_mode=search_mode) + list(extra_tools)
    names = [t.name for t in chosen]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise AgentSetupError(f"two tools are called {', '.join(clashes)}; give an MCP server's tools a prefix "
                              "(MCPToolset(..., prefix='name_'))")
    agent_options["format"] = agent_format(llm, format)
    if agent_options["format"] == "native":
        agent_options["guided"] = False
    if agent_options.get("guided"):
        agent_options["guided"] = supports_guidance(llm)  # "guided where the backend allows it"
    return Agent(llm, chosen, max_steps=max_steps, **agent_options)
