"""The data that flows through retrieval: documents in, chunks stored, hits out."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator


class Document(BaseModel):
    """A text with its identity. `id` is what add/update/delete address."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _non_empty_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("document id must not be empty")
        return value


class Chunk(BaseModel):
    """A piece of a document; `start`/`end` are character offsets into the document's text,
    so `document.text[start:end] == text`."""

    id: int
    doc_id: str
    title: str = ""
    source: str = ""
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class Hit(BaseModel):
    """One search result. `score` is a cosine similarity in dense mode, a BM25 score in
    bm25 mode and a reciprocal-rank-fusion score in hybrid mode; `rank` starts at 1."""

    chunk_id: str
    doc_id: str
    title: str = ""
    source: str = ""
    text: str
    start: int
    end: int
    score: float
    rank: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class LoadError(BaseModel):
    source: str
    message: str


class LoadReport(BaseModel):
    """What a load produced: the documents read and, per bad file or record, an error."""

    documents: list[Document] = Field(default_factory=list)
    errors: list[LoadError] = Field(default_factory=list)
