"""rankact's agent: LLM backends, the ReAct loop, guided decoding and trajectories.

Names are imported lazily so `import rankact.agent` (and the CLI hub) stays instant:
`from rankact.agent import Agent, Trajectory, load_llm`.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Agent": "rankact.agent.loop",
    "GuidedConfig": "rankact.agent.guided",
    "Trajectory": "rankact.agent.trajectory",
    "load_llm": "rankact.agent.llm.loading",
    "parse_step": "rankact.agent.parser",
    "ParseError": "rankact.agent.parser",
    "PROMPT_VERSION": "rankact.agent.prompt",
}

__all__ = ["PROMPT_VERSION", "Agent", "GuidedConfig", "ParseError", "Trajectory", "load_llm", "parse_step"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rankact.agent' has no attribute {name!r}")
