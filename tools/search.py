"""`search`: the agent's window on a `retrieval.Retriever`. It returns numbered passages
with their title and source, and carries each passage's chunk id and source as citations,
so the agent's final answer can cite exactly what it read."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from rankact.tools.base import Tool, ToolCitation, ToolResult

if TYPE_CHECKING:
    from rankact.retrieval import Hit, Retriever

_MODES = ("dense", "bm25", "hybrid")


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="what to look for, in a few words")


def format_passages(hits: list[Hit], max_chars: int = 600) -> str:
    """`[n] (title — source) text` per hit (the document id when it has neither), text cut
    at `max_chars` on a word boundary."""
    lines = []
    for n, hit in enumerate(hits, start=1):
        label = " — ".join(part for part in (hit.title, hit.source) if part) or hit.doc_id
        text = " ".join(hit.text.split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
        lines.append(f"[{n}] ({label}) {text}")
    return "\n".join(lines)


class SearchTool(Tool):
    description = "Search the document index; returns numbered passages with their title and source."
    args_model = SearchArgs

    def __init__(self, retriever: Retriever, k: int = 3, mode: str = "hybrid", name: str = "search",
                 filter: dict[str, Any] | None = None, max_chars: int = 600, timeout: float | None = 30.0):
        if mode not in _MODES:
            raise ValueError(f"search mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.retriever, self.k, self.mode, self.name = retriever, k, mode, name
        self.filter, self.max_chars, self.timeout = filter, max_chars, timeout

    def run(self, query: str) -> ToolResult:
        hits = self.retriever.search(query, k=self.k, filter=self.filter, mode=self.mode)
        if not hits:
            return ToolResult(text=f"No passages found for {query!r}.")
        return ToolResult(
            text=format_passages(hits, self.max_chars),
            citations=[ToolCitation(chunk_id=h.chunk_id, source=h.source or h.doc_id, title=h.title or None)
                       for h in hits],
        )


def search_tool(retriever: Retriever | None = None, index: str | Path | None = None, **options: Any) -> SearchTool:
    """A SearchTool over `retriever`, or over the index saved in folder `index`."""
    if (retriever is None) == (index is None):
        raise ValueError("search needs exactly one of retriever= or index= (an index folder)")
    if retriever is None:
        from rankact.retrieval import Retriever

        retriever = Retriever.load(index)
    return SearchTool(retriever, **options)
