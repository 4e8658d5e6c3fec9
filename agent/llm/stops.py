"""Stop strings in streamed text: how much of it is safe to show yet."""
from __future__ import annotations

from collections.abc import Sequence


def holdback_start(text: str, stops: Sequence[str]) -> int:
    """Where a possible (still incomplete) stop string could start at the end of text.
    Streaming backends emit text only up to here, so a stop string never leaks half-written."""
    start = len(text)
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                start = min(start, len(text) - size)
                break
    return start
