"""How long `Recorder.record()` keeps the app waiting: one trajectory with a realistic
transcript (2,000 token ids), 500 times, with the service down so every line stays spooled
and the background thread keeps retrying beside the app's thread.

    .venv/bin/python bench/recorder_latency.py
"""
from __future__ import annotations

import statistics
import tempfile
import time

from rankact.agent.trajectory import Segment
from rankact.alignment.feedback.collection.sample_data import make_trajectory
from rankact.alignment.feedback.recorder.recorder import Recorder


def main(n: int = 500) -> None:
    folder = tempfile.mkdtemp()
    # nothing listens on port 9: the thread retries with backoff while the app records
    with Recorder("http://127.0.0.1:9", token="x", spool_dir=folder, close_timeout=0.1,
                  backoff=0.01, max_backoff=0.05) as recorder:
        times = []
        for i in range(n):
            t = make_trajectory(f"q{i}?", [{"thought": "x " * 200, "final_answer": "1"}], final_answer="1")
            t.segments.append(Segment(role="generated", text="y " * 1000, token_ids=list(range(2000))))
            start = time.perf_counter()
            recorder.record(t)
            times.append(time.perf_counter() - start)
        stats = recorder.stats()
    times.sort()
    print(f"{len(t.to_json()) / 1024:.0f} KiB a trajectory, {n} records: median {statistics.median(times) * 1e3:.2f} ms,"
          f" p99 {times[int(n * 0.99)] * 1e3:.2f} ms, max {times[-1] * 1e3:.2f} ms;"
          f" spooled {stats.spooled}, retries meanwhile {stats.retries}")


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)  # the recorder's "left in the spool" warning is expected here
    main()
