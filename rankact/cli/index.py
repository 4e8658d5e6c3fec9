"""`rankact index build|search`: build a retrieval index from files and query it."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from rankact.alignment.errors import CommandError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build and search a retrieval index.")



@contextmanager
def _user_errors() -> Iterator[None]:
    """Retrieval's own errors (and bad values) become one-line user errors."""
    from rankact.retrieval import RetrievalError

    try:
        yield
    except (RetrievalError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def parse_filters(items: list[str]) -> dict[str, str | list[str]]:
    """`key=value` pairs; a key given twice matches either value."""
    out: dict[str, str | list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--filter expects key=value, got {item!r}")
        key = key.strip()
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


@app.command("build")
def build(
    sources: Annotated[list[str], typer.Argument(help="Files, folders or glob patterns (.txt .md .html .jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder to write (an index there is replaced).")],
    chunk_tokens: Annotated[int, typer.Option(help="Most tokens per chunk, special tokens included.")] = 256,
    overlap: Annotated[int, typer.Option(help="Tokens shared by consecutive chunks.")] = 32,
    index: Annotated[str, typer.Option(help="flat | hnsw | ivf | auto (by corpus size).")] = "flat",
    embedder: Annotated[str | None, typer.Option(
        help="Local sentence-transformers folder, or hashing-N; default: the packaged all-MiniLM-L6-v2.")] = None,
) -> None:
    """Load, chunk, embed and index SOURCES into the folder --out."""
    from rankact.retrieval import RetrievalError, Retriever, make_embedder

    with _user_errors():
        retriever = Retriever(make_embedder(embedder), chunk_tokens=chunk_tokens, overlap=overlap,
                              index=index, show_progress=True)
        try:  # reuse the embeddings of the index being replaced: unchanged text is not re-encoded
            retriever.copy_cache_from(Retriever.load(out, retriever.embedder))
        except RetrievalError:
            pass
        report = retriever.index(sources)
        if not report.load.documents:  # one line: why each source was skipped, not a line each
            why = "; ".join(f"{e.source}: {e.message}" for e in report.load.errors[:3])
            more = f" (and {len(report.load.errors) - 3} more)" if len(report.load.errors) > 3 else ""
            raise CommandError("nothing to index: no document could be loaded from the sources given"
                               + (f" ({why}{more})" if why else ""))
        for error in report.load.errors:
            typer.echo(f"skipped {error.source}: {error.message}", err=True)
        retriever.save(out)
    typer.echo(f"indexed {retriever.num_documents} documents as {len(retriever)} chunks into {out} "
               f"({report.embedded} embedded, {report.chunks - report.embedded} from cache; "
               f"index {retriever.dense.kind}; {len(report.load.errors)} error(s))")


def _print_hits(query: str, hits) -> None:
    typer.echo(f"query: {query}")
    if not hits:
        typer.echo("  (no hits)")
    for hit in hits:
        label = " — ".join(p for p in (hit.title, hit.source) if p) or hit.doc_id
        text = " ".join(hit.text.split())
        typer.echo(f"{hit.rank:>3}. {hit.score:.4f}  {label}  [chunk {hit.chunk_id}, {hit.start}-{hit.end}]")
        typer.echo(f"     {text[:200]}{' ...' if len(text) > 200 else ''}")


@app.command("search")
def search(
    index_dir: Annotated[Path, typer.Argument(help="An index folder made by `rankact index build`.")],
    query: Annotated[str | None, typer.Argument(help="The query (or use --queries).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many hits.")] = 10,
    mode: Annotated[str, typer.Option(help="dense | bm25 | hybrid.")] = "hybrid",
    filter: Annotated[list[str] | None, typer.Option("--filter", help="key=value on metadata (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query.")] = False,
    queries: Annotated[Path | None, typer.Option(help="File with one query per line.")] = None,
    mmr: Annotated[bool, typer.Option(help="Diversify hits (maximal marginal relevance).")] = False,
    embedder: Annotated[str | None, typer.Option(help="Embedder to open the index with (default: its own).")] = None,
) -> None:
    """Search INDEX_DIR for QUERY, or for every line of --queries."""
    from rankact.retrieval import Retriever, make_embedder

    if (query is None) == (queries is None):
        raise CommandError("give either a QUERY or --queries FILE")
    if queries is not None:
        try:
            lines = [line.strip() for line in queries.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read --queries {queries}: {exc}") from None
        batch = [line for line in lines if line]
    else:
        batch = [query]
    filters = parse_filters(filter or [])
    with _user_errors():
        if not index_dir.is_dir():
            raise CommandError(f"no index at {index_dir}: folder not found")
        retriever = Retriever.load(index_dir, make_embedder(embedder) if embedder else None)
        results = retriever.search_batch(batch, k=k, filter=filters or None, mode=mode, mmr=mmr)
    for q, hits in zip(batch, results, strict=True):
        if as_json:
            sys.stdout.write(json.dumps({"query": q, "hits": [h.model_dump() for h in hits]}, ensure_ascii=False) + "\n")
        else:
            _print_hits(q, hits)
