"""Tools from Model Context Protocol servers (needs the `mcp` extra: pip install 'rankact[mcp]').

    from rankact.tools.mcp import MCPToolset, mcp_tools

    with MCPToolset("python my_server.py") as server:        # stdio; or "http://host:8000/mcp"
        agent = build_agent(llm, extra_tools=server.tools)

    with mcp_tools(["python a.py", "http://localhost:8000/mcp"]) as tools:   # several servers
        ...

Each server tool is a `Tool` whose JSON Schema is the server's: arguments are validated
against it before the call, guided decoding fills its slots from it, and timeouts, errors,
`isError` results and a server that died come back as observations like any tool's.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rankact.tools.mcp.connection import MCPConnectionError, MCPToolset, connect_all
from rankact.tools.mcp.tool import MCPTool

__all__ = ["MCPConnectionError", "MCPTool", "MCPToolset", "connect_all", "mcp_tools"]


@contextmanager
def mcp_tools(servers: Sequence[str | Sequence[str]], **options: Any) -> Iterator[list[MCPTool]]:
    """The tools of every server, in order; every server is closed on exit (and if one fails to open)."""
    toolsets = connect_all(servers, **options)
    try:
        yield [t for toolset in toolsets for t in toolset.tools]
    finally:
        for toolset in toolsets:
            toolset.close()
