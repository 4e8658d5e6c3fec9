"""Which of the tool results' citations a final answer carries."""
from __future__ import annotations

import re
from typing import Any

from rankact.agent.trajectory import Citation


def select_citations(answer: str | None, results: list[Any]) -> list[Citation]:
    """Citations whose [n] the answer cites (latest tool result first), else all of them."""
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer or "")}
    picked: list[Any] = []
    for result in reversed(results):
        for n in sorted(cited):
            if 1 <= n <= len(result.citations) and f"[{n}]" in result.text:
                picked.append(result.citations[n - 1])
        if picked:
            break
    chosen = picked or [c for r in results for c in r.citations]
    out, seen = [], set()
    for c in chosen:
        if c.chunk_id not in seen:
            seen.add(c.chunk_id)
            out.append(Citation(chunk_id=c.chunk_id, source=c.source, title=c.title))
    return out
