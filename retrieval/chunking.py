"""Split a document into chunks that fit the embedder's token limit, by the embedder's own
tokenizer, with character offsets taken from the tokenizer's offset mapping (exact)."""
from __future__ import annotations

from pydantic import BaseModel


class ChunkingConfig(BaseModel):
    max_tokens: int = 256  # including the special tokens the model adds ([CLS], [SEP])
    overlap: int = 32  # tokens shared by consecutive chunks


class Span(BaseModel):
    start: int
    end: int


def chunk_spans(offsets: list[tuple[int, int]], word_ids: list[int | None] | None,
                budget: int, overlap: int) -> list[Span]:
    """Character spans of windows of at most `budget` tokens, consecutive windows sharing
    about `overlap` tokens. Windows start and end on word boundaries (when word ids are
    known) so re-tokenizing a chunk's text gives the same tokens, never more."""
    if budget < 1:
        raise ValueError(f"token budget must be at least 1, got {budget}")
    if not 0 <= overlap < budget:
        raise ValueError(f"overlap must be in [0, {budget}) tokens, got {overlap}")
    n = len(offsets)
    if n == 0:
        return []
    words = word_ids if word_ids is not None else list(range(n))

    def word_start(i: int) -> int:  # first token of the word holding token i
        while i > 0 and words[i] is not None and words[i - 1] == words[i]:
            i -= 1
        return i

    spans: list[Span] = []
    start = 0
    while start < n:
        end = min(start + budget, n)
        if end < n and words[end] is not None and words[end] == words[end - 1]:
            cut = word_start(end)  # do not split a word across chunks
            if cut > start:
                end = cut
        spans.append(Span(start=offsets[start][0], end=offsets[end - 1][1]))
        if end >= n:
            break
        nxt = word_start(max(end - overlap, start + 1))
        start = nxt if nxt > start else end  # always move forward
    return spans
