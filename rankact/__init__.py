"""rankact: tool-using ReAct agents that learn from people's rankings of their trajectories.

The public surface, imported lazily so that `import rankact` (and every `rankact.tools` import,
which loads this package first) stays instant:

    from rankact import build_agent, load_llm, tool

    agent = build_agent(load_llm("default"), tools=["calculator"])
    trajectory = agent.run("What is 17 * 23?")

Everything else lives in the layers below, each importable on its own: `rankact.tools`,
`rankact.retrieval`, `rankact.agent`, `rankact.alignment`; the error tree's root is
`rankact.errors.RankactError`; the command line is `rankact.cli`.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it; resolved on first attribute access.
_EXPORTS: dict[str, str] = {
    "RankactError": "rankact.errors",
    "tool": "rankact.tools.base",
    "Tool": "rankact.tools.base",
    "ToolError": "rankact.tools.base",
    "ToolResult": "rankact.tools.base",
    "Retriever": "rankact.retrieval.retriever",
    "RetrievalError": "rankact.retrieval.errors",
    "Agent": "rankact.agent.loop",
    "build_agent": "rankact.agent.build",
    "load_llm": "rankact.agent.llm.loading",
    "GenerationConfig": "rankact.agent.llm.base",
    "GuidedConfig": "rankact.agent.guided",
    "Trajectory": "rankact.agent.trajectory",
    "TrajectoryStore": "rankact.alignment.feedback.store.trajectory_store",
    "Recorder": "rankact.alignment.feedback.recorder.recorder",
}

__all__ = ["Agent", "GenerationConfig", "GuidedConfig", "RankactError", "Recorder", "RetrievalError", "Retriever", "Tool",
           "ToolError", "ToolResult", "Trajectory", "TrajectoryStore", "build_agent", "load_llm", "tool"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'rankact' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
