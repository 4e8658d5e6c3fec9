"""Read documents from files (.txt, .md, .html, .jsonl), folders, glob patterns or Python
objects. A bad file or record becomes a `LoadError` in the report; everything else loads."""
from __future__ import annotations

import glob
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rankact.retrieval.documents import Document, LoadError, LoadReport

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES
_RECORD_FIELDS = {"id", "text", "title", "source", "metadata"}

Source = str | Path | Document | Mapping[str, Any]


def load_documents(sources: Source | Iterable[Source]) -> LoadReport:
    """Load every source into one report. Sources are paths to files, folders (walked
    recursively, supported suffixes only), glob patterns, `Document`s or record dicts.
    Duplicate ids keep the first occurrence and report the later ones."""
    if isinstance(sources, str | Path | Document | Mapping):
        sources = [sources]
    report = LoadReport()
    seen: set[str] = set()
    for item in sources:
        for doc_or_error in _load_one(item):
            if isinstance(doc_or_error, LoadError):
                report.errors.append(doc_or_error)
            elif doc_or_error.id in seen:
                report.errors.append(LoadError(source=doc_or_error.source or doc_or_error.id,
                                               message=f"duplicate document id {doc_or_error.id!r} (kept the first)"))
            else:
                seen.add(doc_or_error.id)
                report.documents.append(doc_or_error)
    return report


def _load_one(item: Source) -> Iterator[Document | LoadError]:
    if isinstance(item, Document):
        yield item
    elif isinstance(item, Mapping):
        try:
            yield record_to_document(item, default_source="<object>")
        except ValueError as exc:
            yield LoadError(source="<object>", message=str(exc))
    elif isinstance(item, str | Path):
        yield from _load_path(item)
    else:
        yield LoadError(source=repr(item)[:80], message=f"cannot load a {type(item).__name__}")


def _load_path(item: str | Path) -> Iterator[Document | LoadError]:
    text = str(item)
    path = Path(item)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        for file in files:
            yield from load_file(file)
    elif path.is_file():
        yield from load_file(path)
    elif glob.has_magic(text):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            yield LoadError(source=text, message="pattern matched no files")
        for file in files:
            yield from load_file(file)
    else:
        yield LoadError(source=text, message="no such file or folder")


def load_file(path: Path) -> Iterator[Document | LoadError]:
    """One file's documents, or one LoadError saying why the file could not be used."""
    suffix = path.suffix.lower()
    source = str(path)
    if suffix not in SUPPORTED:
        yield LoadError(source=source, message=f"unsupported file type {suffix or '(none)'!r}; "
                                               f"expected one of {', '.join(sorted(SUPPORTED))}")
        return
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        yield LoadError(source=source, message=f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return
    except OSError as exc:
        yield LoadError(source=source, message=f"cannot read: {exc.strerror or exc}")
        return
    if suffix in JSONL_SUFFIXES:
        try:
            docs = list(_parse_jsonl(raw, source))
        except ValueError as exc:  # the whole file is rejected: a half-read file would be a silent loss
            yield LoadError(source=source, message=str(exc))
            return
        yield from docs
        return
    if suffix in HTML_SUFFIXES:
        title, body = html_to_text(raw)
    else:
        title = _markdown_title(raw) if suffix != ".txt" else ""
        body = raw
    if not body.strip():
        yield LoadError(source=source, message="file has no text")
        return
    yield Document(id=source, text=body, title=title or path.stem, source=source,
                   metadata={"type": suffix.lstrip(".")})


def _parse_jsonl(raw: str, source: str) -> Iterator[Document]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"line {number}: expected a JSON object, got {type(record).__name__}")  # noqa: TRY004
        try:
            yield record_to_document(record, default_source=f"{source}#L{number}")
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None


def record_to_document(record: Mapping[str, Any], *, default_source: str) -> Document:
    """A record `{id, text, title?, source?, metadata?, ...}` as a Document; unknown top-level
    keys join the metadata so nothing the user wrote is lost."""
    missing = [key for key in ("id", "text") if key not in record]
    if missing:
        raise ValueError(f"record is missing {' and '.join(repr(m) for m in missing)}")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("'metadata' must be an object")  # noqa: TRY004
    extra = {k: v for k, v in record.items() if k not in _RECORD_FIELDS}
    if not isinstance(record["text"], str) or not record["text"].strip():
        raise ValueError("'text' must be a non-empty string")
    if not isinstance(record["id"], str | int) or isinstance(record["id"], bool):
        raise ValueError("'id' must be a string or an integer")  # noqa: TRY004
    try:
        return Document(id=str(record["id"]), text=record["text"], title=str(record.get("title") or ""),
                        source=str(record.get("source") or default_source), metadata={**extra, **metadata})
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"] for e in exc.errors(include_url=False))) from None


def html_to_text(raw: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page: scripts, styles and other invisible parts removed."""
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(raw, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return title, "\n".join(line for line in lines if line)


def _markdown_title(raw: str) -> str:
    for line in raw.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""
