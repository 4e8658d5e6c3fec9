"""How much text a tool may hand the model: one bound for results and errors alike.

A tool's output is untrusted (an MCP server, a web page, a file): whatever it returns or
raises becomes an observation in the next prompt, a step of the stored trajectory and,
with tracing on, a span attribute. The agent cuts results to `MAX_OBSERVATION_CHARS`; an
error message gets the same bound, or a 20 MB exception text would go everywhere a result
of 2,000 characters goes.
"""
from __future__ import annotations

MAX_OBSERVATION_CHARS = 2000
TRUNCATED = " ...(truncated)"


def bounded(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    """`text` cut to at most `limit` characters plus the truncation mark."""
    return text if len(text) <= limit else text[:limit] + TRUNCATED
