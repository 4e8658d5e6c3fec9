"""Retrieval quality and speed on HotpotQA's distractor paragraphs.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py [--index flat|hnsw] [--limit N]

Corpus: every context paragraph of ../shared/data/hotpot_dev_distractor_500.json, as
title + " " + its sentences joined, deduplicated by title (about 4,900 passages).
Prints, for the DEV questions (0-299) only:
  * recall@2, @5, @10 of the gold supporting titles for dense, bm25 and hybrid search;
  * indexing throughput (passages/s: chunking, embedding, store, FAISS) beside a raw
    SentenceTransformer.encode of the same texts with the same batch size, same run;
  * query latency p50/p95 per mode (one query at a time, query encoding included).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hotpot_dev_distractor_500.json"
DEV = range(300)
MODES = ("dense", "bm25", "hybrid")
KS = (2, 5, 10)


def passages(records: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for record in records:
        for title, sentences in record["context"]:
            if title not in seen:
                text = f"{title} {''.join(sentences).strip()}"
                seen[title] = {"id": title, "title": title, "text": text, "source": f"hotpotqa:{title}"}
    return list(seen.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf"])
    parser.add_argument("--limit", type=int, default=None, help="index only the first N passages (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from rankact.retrieval import Embedder, Retriever

    records = json.loads(args.data.read_text())
    corpus = passages(records)[: args.limit]
    texts = [p["text"] for p in corpus]
    print(f"corpus: {len(corpus)} passages from {len(records)} questions ({args.data.name})")

    embedder = Embedder(batch_size=args.batch_size)
    embedder.model.encode(texts[:64], batch_size=args.batch_size)  # warm-up: first-call allocations

    start = time.perf_counter()
    embedder.model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    raw_s = time.perf_counter() - start

    retriever = Retriever(embedder, index=args.index, show_progress=True)  # fresh: nothing cached
    start = time.perf_counter()
    report = retriever.add(corpus)
    index_s = time.perf_counter() - start
    assert report.embedded == report.chunks  # the throughput counts real encoding, not cache hits

    questions = [records[i] for i in DEV if i < len(records)]
    recall = {m: {k: [] for k in KS} for m in MODES}
    latency = {m: [] for m in MODES}
    for mode in MODES:
        retriever.search("warm up", k=10, mode=mode)
        for record in questions:
            gold = {title for title, _ in record["supporting_facts"]}
            start = time.perf_counter()
            hits = retriever.search(record["question"], k=10, mode=mode)
            latency[mode].append(time.perf_counter() - start)
            titles = [h.title for h in hits]
            for k in KS:
                recall[mode][k].append(len(gold & set(titles[:k])) / len(gold))

    figures = {
        "passages": len(corpus), "chunks": len(retriever), "index": retriever.dense.kind,
        "index_passages_per_s": len(corpus) / index_s, "raw_encode_passages_per_s": len(corpus) / raw_s,
        "recall": {m: {f"@{k}": statistics.fmean(v) for k, v in recall[m].items()} for m in MODES},
        "latency_ms": {m: {"p50": 1000 * percentile(v, 0.5), "p95": 1000 * percentile(v, 0.95)}
                       for m, v in latency.items()},
        "questions": len(questions),
    }
    print(f"\nindexing ({retriever.dense.kind}, {len(retriever)} chunks, batch {args.batch_size}):")
    print(f"  rankact Retriever.add          {figures['index_passages_per_s']:8.1f} passages/s  ({index_s:.1f} s)")
    print(f"  raw SentenceTransformer.encode {figures['raw_encode_passages_per_s']:8.1f} passages/s  ({raw_s:.1f} s)")
    print(f"\nDEV questions 0-{len(questions) - 1}: recall of gold supporting titles, and query latency")
    print(f"  {'mode':8} {'R@2':>6} {'R@5':>6} {'R@10':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for m in MODES:
        r, lat = figures["recall"][m], figures["latency_ms"][m]
        print(f"  {m:8} {r['@2']:6.3f} {r['@5']:6.3f} {r['@10']:6.3f} {lat['p50']:8.1f} {lat['p95']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
