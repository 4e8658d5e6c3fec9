"""20 clients submit rankings at the same moment against a live server (uvicorn in a
thread, SQLite in WAL mode): every ranking is stored exactly once, none is lost."""
from __future__ import annotations

import threading
from itertools import permutations

import httpx
import pytest

from rankact.alignment.feedback.collection.sample_data import load_sample_data
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.service.server import serve_in_thread
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

CLIENTS = 20


@pytest.fixture
def live(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'live.db'}")
    load_sample_data(store)
    with serve_in_thread(create_app(store)) as url:
        yield store, url
    store.close()


def _all_at_once(jobs):
    """Run the callables in threads released together by a barrier; returns their results."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def worker(i, job):
        barrier.wait()
        try:
            results[i] = job()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _post(url, token, body):
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.post("/api/rankings", json=body)
        return response.status_code, response.json()


def test_twenty_annotators_submit_at_once_none_lost(live):
    store, url = live
    qid = "sample-multiply"
    ids = store.trajectory_ids(qid)
    orders = [[[a], [b], [c]] for a, b, c in permutations(ids)]  # 6 distinct orders, reused
    tokens = [store.create_annotator(f"annotator-{i:02d}") for i in range(CLIENTS)]
    jobs = [lambda i=i: _post(url, tokens[i], {"question_id": qid, "order": orders[i % len(orders)],
                                               "comment": f"client {i}"}) for i in range(CLIENTS)]
    results = _all_at_once(jobs)
    assert all(not isinstance(r, Exception) for r in results), results
    assert [status for status, _ in results] == [201] * CLIENTS, results
    stored = store.rankings(qid)
    assert len(stored) == CLIENTS
    by_annotator = {r.annotator: r for r in stored}
    for i in range(CLIENTS):
        ranking = by_annotator[f"annotator-{i:02d}"]
        assert ranking.order == orders[i % len(orders)] and ranking.comment == f"client {i}"


def test_twenty_identical_submissions_at_once_store_one(live):
    store, url = live
    qid = "sample-eiffel-year"
    ids = store.trajectory_ids(qid)
    token = store.create_annotator("eager")
    body = {"question_id": qid, "order": [[ids[2]], [ids[0], ids[1]]]}
    results = _all_at_once([lambda: _post(url, token, body)] * CLIENTS)
    assert all(not isinstance(r, Exception) for r in results), results
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (CLIENTS - 1) + [201]  # one created, the repeats changed nothing
    assert len({payload["ranking"]["id"] for _, payload in results}) == 1
    [stored] = store.rankings(qid)
    assert stored.annotator == "eager" and stored.order == body["order"]
