"""A small MCP server for the tests (run as a subprocess): `python mcp_server.py` serves over
stdio, `python mcp_server.py PORT` over streamable HTTP on 127.0.0.1:PORT."""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("rankact-test", log_level="WARNING")
CALLS = {"n": 0}


class Point(BaseModel):
    x: int
    y: int


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    CALLS["n"] += 1
    return a + b


@server.tool()
def shout(text: str, mode: Literal["upper", "lower"] = "upper") -> str:
    """Change the case of a text."""
    CALLS["n"] += 1
    return text.upper() if mode == "upper" else text.lower()


@server.tool()
def pick(color: Literal["red", "green", "blue"]) -> str:
    """Pick a color."""
    CALLS["n"] += 1
    return f"picked {color}"


@server.tool()
def norm(p: Point) -> float:
    """Length of a point's vector."""
    CALLS["n"] += 1
    return (p.x**2 + p.y**2) ** 0.5


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    CALLS["n"] += 1
    raise ToolError(f"cannot do it: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    CALLS["n"] += 1
    await asyncio.sleep(seconds)
    return "awake"


@server.tool()
def calls() -> int:
    """How many tool calls this server has run."""
    return CALLS["n"]


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
