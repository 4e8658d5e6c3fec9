"""Feedback service throughput on SQLite (WAL, synchronous=FULL): annotators loop
GET /api/next -> POST /api/rankings until nothing is left. Printed side by side with the
same work done through the Python store directly (no HTTP), as the baseline.

    .venv/bin/python bench/feedback_service.py --questions 200 --k 4 --clients 1 8 20

Reports rankings/s and request latency percentiles, and checks that every ranking landed
exactly once (questions x annotators-per-question).
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import threading
import time

import httpx

from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.server import serve_in_thread
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore


def fill(store: TrajectoryStore, questions: int, k: int) -> None:
    for q in range(questions):
        text = f"Benchmark question {q}?"
        for s in range(k):
            steps = [{"thought": "look it up", "action": "search", "action_input": {"query": text},
                      "observation": "passage " * 80}, {"thought": "done", "final_answer": str(s)}]
            store.add(make_trajectory(text, steps, final_answer=str(s)), question_id=f"q{q}")


def direct(store: TrajectoryStore, annotator: str) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    while (q := store.next_question_for(annotator)) is not None:
        ids = store.trajectory_ids(q.id)
        store.submit_ranking(Ranking(question_id=q.id, annotator=annotator, order=[[i] for i in ids]))
        n += 1
    return n, time.perf_counter() - start


def over_http(url: str, tokens: list[str]) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    counts = [0] * len(tokens)
    barrier = threading.Barrier(len(tokens))

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {tokens[i]}"}) as http:
            barrier.wait()
            while True:
                t0 = time.perf_counter()
                nxt = http.get("/api/next").json()
                t1 = time.perf_counter()
                if nxt["question"] is None:
                    if nxt["waiting"]:  # the rest is leased to others right now: wait for them
                        time.sleep(0.05)
                        continue
                    break
                order = [[t["id"]] for t in nxt["trajectories"]]
                response = http.post("/api/rankings", json={"question_id": nxt["question"]["id"], "order": order})
                t2 = time.perf_counter()
                response.raise_for_status()
                counts[i] += 1
                with lock:
                    latencies.extend([t1 - t0, t2 - t1])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tokens))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - start, latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 20])
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = TrajectoryStore(f"sqlite:///{tmp}/direct.db")
        fill(store, args.questions, args.k)
        n, seconds = direct(store, "direct")
        rows.append(("python store, 1 annotator", n, seconds, float("nan"), float("nan")))
        store.close()
        for clients in args.clients:
            store = TrajectoryStore(f"sqlite:///{tmp}/http-{clients}.db")
            fill(store, args.questions, args.k)
            tokens = [store.create_annotator(f"a{i}") for i in range(clients)]
            with serve_in_thread(create_app(store)) as url:
                n, seconds, latencies = over_http(url, tokens)
            expected = args.questions * clients
            stored = len(store.rankings())
            if stored != n or n != expected:
                raise SystemExit(f"lost or duplicated rankings: {n} acknowledged, {stored} stored, {expected} expected")
            rows.append((f"HTTP, {clients} concurrent annotators", n, seconds, pct(latencies, 50), pct(latencies, 95)))
            store.close()

    print(f"{args.questions} questions x K={args.k}; SQLite WAL + synchronous=FULL")
    print(f"{'setup':<36} {'rankings':>9} {'seconds':>8} {'rankings/s':>11} {'p50 ms':>7} {'p95 ms':>7}")
    for name, n, seconds, p50, p95 in rows:
        p50_text, p95_text = ("-", "-") if math.isnan(p50) else (f"{p50:.1f}", f"{p95:.1f}")  
        print(f"{name:<36} {n:>9} {seconds:>8.2f} {n / seconds:>11.1f} {p50_text:>7} {p95_text:>7}")


if __name__ == "__main__":
    main()
