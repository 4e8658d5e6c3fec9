"""Random hostile requests against the feedback service, as issue 15's attacker tried them.

    python bench/service_attack.py [--requests 1500] [--seed 15]

Every role (admin, annotator, ingest, no token, a wrong token), hostile Host headers, and
bodies with NaN, Infinity, 1e400, lone surrogates, NUL, 2^63 and wrong types spliced into
otherwise valid trajectories, rankings and end-user votes. Prints the status counts, the
number of 5xx answers (the figure that must stay 0) and of damaged stored rows, and checks
every 100 requests that the admin's reads still answer 200. Exit status 1 on any 5xx.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile

from fastapi.testclient import TestClient

from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.service import create_app
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

HOSTILE = ["\\ud800", "\\udfff", "NaN", "Infinity", "-Infinity", "1e400", str(2**63), str(-(2**70)), "\\u0000",
           '"x"', "[]", "{}", "null"]
HOSTS = ["127.0.0.1", "localhost:8000", "[::1]:8000", "attacker.example", "127.0.0.1.nip.io", "", "LOCALHOST"]
READS = ["/api/trajectories", "/api/questions", "/api/export", "/api/stats"]


def splice(rng: random.Random, text: str, keys: tuple[str, ...]) -> str:
    """Replace the value after some of `keys` with a hostile token (30% each)."""
    for key in keys:
        if key in text and rng.random() < 0.3:
            value = rng.choice(HOSTILE)
            text = text.replace(key, key.split(":")[0] + ": " + (f'"{value}"' if value.startswith("\\u") else value), 1)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    store = TrajectoryStore(f"sqlite:///{tempfile.mkdtemp()}/attack.db")
    load_sample_data(store)
    tokens: dict[str, str | None] = {role: store.create_account(role, role) for role in ("admin", "annotator", "ingest")}
    tokens.update({"none": None, "wrong": "not-a-token"})
    client = TestClient(create_app(store), base_url="http://127.0.0.1", raise_server_exceptions=False)
    ids = store.trajectory_ids("sample-multiply")
    gets = ["/api/trajectories", f"/api/trajectories/{ids[0]}", "/api/questions", "/api/questions/sample-multiply",
            "/api/rankings", "/api/export", "/api/export?format=trl", "/api/stats", "/api/me", "/api/next",
            f"/api/trajectories?offset={2**63}", f"/api/trajectories?limit={2**64}", "/api/rankings?annotator=admin",
            "/api/feedback", "/", "/static/app.js", "/docs", "/openapi.json"]

    def trajectory_body() -> str:
        t = json.loads(make_trajectory(rng.choice(["Q?", "What is 17 multiplied by 23?"]),
                                       [{"thought": "t", "final_answer": "a"}], final_answer="a").to_json())
        text = json.dumps({"trajectory": t, "question_id": rng.choice([None, "sample-multiply", "x/y", "..", "q"])})
        return splice(rng, text, ('"seconds": 0.0', '"index": 0', '"thought": "t"', '"question": "Q?"',
                                  '"prompt_tokens": 0'))

    def ranking_body() -> str:
        order = [[i] for i in rng.sample(ids, len(ids))]
        text = json.dumps({"question_id": "sample-multiply", "order": order, "comment": "c",
                           "flags": [{"trajectory_id": ids[0], "step_index": 0}]})
        return splice(rng, text, ('"comment": "c"', '"step_index": 0'))

    def vote_body() -> str:
        vote = rng.choice([{"thumbs": "up"}, {"score": 0.5}, {"chosen_id": ids[0], "rejected_id": ids[-1]}])
        if "chosen_id" not in vote:
            vote["trajectory_id"] = rng.choice(ids)
        text = json.dumps({"end_user": "u-1", **vote})
        return splice(rng, text, ('"end_user": "u-1"', '"score": 0.5', '"thumbs": "up"'))

    writes = [("/api/trajectories", trajectory_body), ("/api/rankings", ranking_body), ("/api/feedback", vote_body)]
    statuses: collections.Counter[int] = collections.Counter()
    server_errors: list[tuple[str, str]] = []
    for i in range(args.requests):
        who = rng.choice(list(tokens))
        headers = {"Host": rng.choice(HOSTS) if rng.random() < 0.3 else "127.0.0.1"}
        if tokens[who]:
            headers["Authorization"] = f"Bearer {tokens[who]}"
        if rng.random() < 0.4:
            response = client.get(rng.choice(gets), headers=headers)
        else:
            path, body = rng.choice(writes)
            response = client.post(path, headers={**headers, "Content-Type": "application/json"}, content=body())
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            server_errors.append((str(response.request.url), response.text[:200]))
        if i % 100 == 0:  # every read still works after whatever was written
            admin = {"Authorization": f"Bearer {tokens['admin']}"}
            broken = [p for p in READS if client.get(p, headers=admin).status_code != 200]
            if broken:
                print(f"after request {i}: admin reads failing: {broken}")
                return 1
    print(f"requests {args.requests}  statuses {dict(sorted(statuses.items()))}  5xx {len(server_errors)}  "
          f"damaged rows {len(store.damaged_ids())}")
    for url, text in server_errors[:3]:
        print(f"  5xx: {url} {text}")
    return 1 if server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
