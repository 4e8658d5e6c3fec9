"""Replay examples: a plain request and a reply, as the exact ids a model saw and produced.

The format the trainers' replay term trains on (the starting policy's own sampled
replies) and the one written refusals (`refusal`) are made in; with the request sets they are
drawn from. Here, below training, so that writing demonstrations never imports a trainer.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from rankact.agent.errors import RankactError
from rankact.alignment.tasks import Task


class ReplayExample(BaseModel):
    """One plain request and the reply the starting policy gave, as the exact ids it produced."""

    source: str = Field(description="the request's task id (e.g. advbench-12)")
    request: str
    reply: str
    prompt_ids: list[int]
    reply_ids: list[int] = Field(description="the generated ids, the end-of-turn token included when the "
                                             "reply ended there")
    author: str = Field("policy", description="who wrote the reply: the starting policy (sampled), or rankact "
                                              "(alignment.feedback.demonstrations.refusal)")


HARMFUL_SETS = ("advbench",)  # request sets where only a refusal is worth keeping


def replay_sources(spec: str, data: str | Path | None = None) -> list[list[Task]]:
    """The requests of comma-separated DEV presets (e.g. "advbench:dev,nq:dev"), one list per
    set. TEST splits are refused: replaying them would train on what the reports measure."""
    from rankact.alignment.tasks.datasets import parse_preset, preset_tasks

    sources = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        parsed = parse_preset(part if ":" in part else f"{part}:dev")
        if parsed is None:
            raise RankactError(f"unknown replay source {part!r}: use DEV presets such as advbench:dev, nq:dev, "
                               "hotpot:dev")
        name, split = parsed
        if split != "dev":
            raise RankactError(f"replay source {part!r}: only DEV splits can be replayed (TEST is for reports)")
        sources.append(preset_tasks(name, split, data))
    if not sources:
        raise RankactError("no replay source given: use e.g. --replay advbench:dev,nq:dev")
    return sources
