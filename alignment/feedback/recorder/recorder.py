"""Ship a live application's trajectories to the feedback service, or straight into a store.

    with Recorder("http://127.0.0.1:8000", token=TOKEN) as recorder:
        agent = recorder.wrap(build_agent(llm))      # run / arun / stream / astream record
        trajectory = agent.run("What is 17 * 23?")   # question id: a hash of the text

`record()` writes the trajectory as one line to a local spool (`rankact.alignment.feedback.recorder.spool`) and
returns: it never waits on the network and never raises into the app. A background thread
sends the spool's lines in batches, retries failures with exponential backoff and jitter, and
acknowledges a line only once the target has it, so a service that is down, slow or restarted,
and an app that is killed, lose nothing: the next recorder on the same spool folder sends what
is left.

The guarantee: a line recorded (`record()` returned True) is never acknowledged unless it is
stored; until then it is spooled, or moved to `dead-letter.jsonl` with the reason and a log
line. What each answer does (`targets.py`):

- stored (201; a vote: 201, or 200 "duplicate"): acknowledged;
- the same trajectory stored already (409 `already_stored`: same id, same content; the
  trajectory id is the idempotency key): acknowledged, counted in `duplicates`;
- the question has rankings (409 `question_closed`): posted again to the version the service
  names (question `ID-vN`; rankings compare the runs of one version); counted in `moved`;
- down, slow, overloaded (connection errors, timeouts, 408, 425, 429, 5xx): kept, retried;
- a configuration only the operator can fix (401, 403 token; 400 Host not served; 3xx
  redirect; 404/405 no service at that URL; a 2xx that is not the service's answer): kept and
  retried with backoff, logged once as an error;
- the data refused for good (409 the id holds another trajectory, or a vote's id is taken; 400
  invalid, 404 unknown trajectory for a vote, 413, 422): moved to `dead-letter.jsonl` with the
  reason. `replay_dead_letters()` (`rankact feedback replay-dead-letters`) sends them again once
  the cause is fixed, removing each only when it is stored.

End users' votes go the same way: `thumbs()`, `feedback()` (a score) and `prefer()` (a choice)
spool one line each, marked as a vote, after the trajectories recorded before them.

The spool folder must be private: a symlink, a folder another user owns, or a group- or
world-writable folder without the sticky bit is refused (`RecorderError`) and files in it are
never followed through symlinks (`spool.py`).
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import RecorderError
from rankact.alignment.feedback.recorder.recording_agent import RecordingAgent
from rankact.alignment.feedback.recorder.spool import Spool, dead_letter_line
from rankact.alignment.feedback.recorder.targets import (
    FEEDBACK_PREFIX,
    Outcome,
    Target,
    feedback_line,
    open_target,
)
from rankact.alignment.feedback.records.end_user import FeedbackIn

log = logging.getLogger("rankact.recorder")


class RecorderStats(BaseModel):
    recorded: int = 0    # trajectories and votes accepted (written to the spool)
    sent: int = 0        # delivered, duplicates included
    duplicates: int = 0  # of `sent`, already stored before (a re-sent line)
    moved: int = 0       # of `sent`, stored under a newer version of a question that had rankings
    spooled: int = 0     # waiting in the spool now
    failed: int = 0      # refused for good, moved to the dead-letter file (replay_dead_letters() resends)
    dropped: int = 0     # could not be kept: not a trajectory or vote, spool full or unwritable, recorder closed
    retries: int = 0     # deliveries that failed and will be tried again
    replayed: int = 0    # found in the spool at start (an earlier run's or a dead process's)
    last_error: str | None = None
    spool: str = ""      # the spool file
    dead_letter: str = ""


class ReplayStats(BaseModel):
    """What `Recorder.replay_dead_letters()` did with the dead-letter file."""
    stored: int = 0      # delivered now and removed from the file (duplicates included)
    duplicates: int = 0  # of `stored`, found stored already
    refused: int = 0     # refused again, kept with the new reason
    kept: int = 0        # left in the file (refused again, or not tried: the target is failing)
    last_error: str | None = None
    dead_letter: str = ""


class Recorder:
    """Sends recorded trajectories to `target` in the background (see the module docstring).

    target: the service's base URL (`http://HOST:PORT`, needs `token`) or a store URL
    (`sqlite:///feedback.db`, `postgresql://...`). spool_dir: where lines wait, by default
    `$RANKACT_CACHE/recorder/<hash of target>`. close_timeout bounds `close()` and the atexit
    flush; request_timeout bounds one delivery.
    """

    def __init__(
        self, target: str, *, token: str | None = None, spool_dir: str | Path | None = None,
        batch_size: int = 32, linger: float = 0.05, request_timeout: float = 10.0,
        backoff: float = 0.5, max_backoff: float = 30.0, close_timeout: float = 10.0,
        max_spool_bytes: int = 1 << 30, durable: bool = False, transport: Any = None,
    ) -> None:
        if batch_size < 1 or backoff <= 0 or max_backoff < backoff or close_timeout < 0 or request_timeout <= 0:
            raise RecorderError("batch_size >= 1, 0 < backoff <= max_backoff, close_timeout >= 0 and "
                                "request_timeout > 0 are needed")
        self.target: Target = open_target(target, token=token, transport=transport)
        folder = Path(spool_dir) if spool_dir is not None else _default_spool_dir(target)
        try:
            self._spool = Spool(folder, max_bytes=max_spool_bytes, durable=durable)
        except OSError as exc:
            raise RecorderError(f"cannot use spool folder {folder}: {exc}") from exc
        self.batch_size, self.linger = batch_size, linger
        self.request_timeout, self.close_timeout = request_timeout, close_timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self._stats = RecorderStats(replayed=self._spool.pending, spool=str(self._spool.path),
                                    dead_letter=str(self._spool.folder / "dead-letter.jsonl"))
        self._stats_lock = threading.Lock()
        self._progress = threading.Condition()  # notified on every acknowledgement
        self._wake = threading.Event()   # there is something to send, or close/flush was asked
        self._closing = threading.Event()
        self._deadline = float("inf")     # set by close()
        self._closed = False
        self._down = False                # the target is failing (log once, not per retry)
        self._deliver_lock = threading.Lock()  # one delivery at a time: the thread, or a replay
        self._moved_logged: set[str] = set()
        if self._spool.pending:
            log.info("recorder: %d trajectories waiting in %s will be sent", self._spool.pending, self._spool.path)
        self._thread = threading.Thread(target=self._run, name="rankact-recorder", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the app's side: never blocks on the network, never raises --

    def record(self, trajectory: Trajectory, *, question_id: str | None = None,
               gold: list[str] | None = None) -> bool:
        """Queue `trajectory` for delivery; True once it is in the spool (it will arrive)."""
        try:
            if not isinstance(trajectory, Trajectory):
                raise TypeError(f"record() takes a Trajectory, not {type(trajectory).__name__}")
            line = _body(trajectory, question_id, gold)
        except Exception as exc:  # noqa: BLE001 - an app's bad call is logged, not raised
            return self._drop(f"cannot record: {exc}")
        return self._append(line, f"trajectory {trajectory.id}")

    def _append(self, line: bytes, what: str) -> bool:
        if self._closed:
            return self._drop(f"recorder closed; {what} not recorded")
        try:
            kept = self._spool.append(line)
        except OSError as exc:
            return self._drop(f"cannot write the spool {self._spool.path}: {exc}")
        if not kept:
            return self._drop(f"spool {self._spool.path} is full ({self._spool.max_bytes} bytes); {what} dropped")
        self._count(recorded=1)
        self._wake.set()
        return True

    # -- end users' votes (alignment.feedback.records.end_user): the same spool, the same delivery --

    def thumbs(self, trajectory_id: str, up: bool, *, end_user: str, **extra: Any) -> bool:
        """Queue an end user's thumbs up (`up=True`) or down on a recorded trajectory."""
        return self._vote(end_user=end_user, trajectory_id=trajectory_id, thumbs="up" if up else "down", **extra)

    def feedback(self, trajectory_id: str, score: float, *, end_user: str, **extra: Any) -> bool:
        """Queue an end user's score in [-1, 1] (0 neutral) on a recorded trajectory."""
        return self._vote(end_user=end_user, trajectory_id=trajectory_id, score=score, **extra)

    def prefer(self, chosen_id: str, rejected_id: str, *, end_user: str, **extra: Any) -> bool:
        """Queue an end user's choice between two recorded trajectories of one question."""
        return self._vote(end_user=end_user, chosen_id=chosen_id, rejected_id=rejected_id, **extra)

    def _vote(self, **fields: Any) -> bool:
        """`extra` above: feedback_id, comment. The vote is dated now, so a later vote of the same
        user replaces it however the two travel; True once it is in the spool."""
        try:
            fields["created_at"] = fields.get("created_at") or datetime.now(UTC)
            vote = FeedbackIn(**fields)
            line = feedback_line(vote.model_dump_json(exclude_none=True).encode())
        except Exception as exc:  # noqa: BLE001 - an app's bad call is logged, not raised
            return self._drop(f"cannot record the vote: {str(exc).splitlines()[0]}")
        return self._append(line, "vote")

    def wrap(self, agent: Any) -> RecordingAgent:
        """`agent` whose runs are recorded (see `RecordingAgent`)."""
        return RecordingAgent(agent, self)

    def stats(self) -> RecorderStats:
        with self._stats_lock:
            return self._stats.model_copy(update={"spooled": self._spool.pending})

    def flush(self, timeout: float | None = None) -> bool:
        """Try to send everything now; True when the spool is empty within `timeout` seconds."""
        if self._closed:
            return self._spool.pending == 0
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(lambda: self._spool.pending == 0, timeout)

    def close(self, timeout: float | None = None) -> RecorderStats:
        """Send what is pending for at most `timeout` (default close_timeout) seconds, then stop.
        What is not sent by then stays in the spool for the next recorder on the folder."""
        if not self._closed:
            self._closed = True
            atexit.unregister(self.close)
            timeout = self.close_timeout if timeout is None else timeout
            self._deadline = time.monotonic() + timeout
            self._closing.set()
            self._wake.set()
            self._thread.join(timeout + 0.5)
            if self._thread.is_alive():  # a delivery past its timeout; the daemon thread ends with the process
                log.warning("recorder: close timed out; unsent trajectories stay in %s", self._spool.path)
            else:
                self.target.close()
                self._spool.close()
            if self._spool.pending:
                log.warning("recorder: %d trajectories left in %s, sent by the next recorder there",
                            self._spool.pending, self._spool.path)
        return self.stats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the background thread --

    def _run(self) -> None:
        while True:
            try:
                self._send_spooled()
                return
            except Exception:  # a disk error: log, wait, go on; the lines are still in the spool
                log.exception("recorder: unexpected error in the sending thread")
                if self._closing.is_set():
                    return
                self._pause(8, None)

    def _send_spooled(self) -> None:
        attempt = 0
        while True:
            lines = self._spool.peek(self.batch_size)
            if not lines:
                if self._closing.is_set():
                    return
                self._wake.wait()
                self._wake.clear()
                if not self._closing.is_set():
                    self._closing.wait(self.linger)  # let a batch gather
                continue
            self._spool.sync()  # the batch is on disk before we start on it
            for line in lines:
                if self._closing.is_set() and time.monotonic() >= self._deadline:
                    return
                outcome = self._deliver(line, self._timeout())
                if outcome.kind == "retry":
                    attempt += 1
                    self._failing(outcome)
                    if self._closing.is_set():
                        return  # no backoff on the way out: the spool keeps it
                    self._pause(attempt, outcome.retry_after)
                    break
                attempt = 0
                if not self._settle(line, outcome):
                    break

    def _deliver(self, line: bytes, timeout: float) -> Outcome:
        try:
            with self._deliver_lock:
                return self.target.deliver(line, timeout=timeout)
        except Exception as exc:  # a bug must not kill the thread and strand the spool
            log.exception("recorder: delivery failed unexpectedly")
            return Outcome("retry", f"unexpected {type(exc).__name__}: {exc}")

    def _settle(self, line: bytes, outcome: Outcome) -> bool:
        """Count and acknowledge a line; False when it must be tried again (dead-letter unwritable)."""
        if self._down:
            self._down = False
            log.warning("recorder: %s reachable again; sending %d spooled trajectories",
                        self.target.name, self._spool.pending)
        if outcome.kind == "reject":
            try:
                self._spool.dead_letter(line, outcome.reason)
            except OSError as exc:
                log.error("recorder: cannot write the dead-letter file: %s", exc)
                self._pause(8, None)
                return False  # keep the line; it is tried again
            log.error("recorder: %s refused a %s (%s); kept in %s", self.target.name,
                      "vote" if line.startswith(FEEDBACK_PREFIX) else "trajectory", outcome.reason,
                      self._stats.dead_letter)
            self._count(failed=1, last_error=outcome.reason)
        else:
            self._count(sent=1, duplicates=int(outcome.kind == "duplicate"), moved=int(outcome.stored_under is not None))
            self._log_moved(outcome)
        with self._progress:
            self._spool.ack(line)
            self._progress.notify_all()
        return True

    def _log_moved(self, outcome: Outcome) -> None:
        question = outcome.stored_under
        if question is not None and question not in self._moved_logged and len(self._moved_logged) < 10_000:
            self._moved_logged.add(question)  # once a version: a popular question is moved often
            log.info("recorder: a question already had rankings; its new runs are stored under %s", question)

    # -- dead letters --

    def replay_dead_letters(self, timeout: float | None = None) -> ReplayStats:
        """Send the dead-letter file's lines again, in order, now (in the caller's thread), once the
        cause is fixed (a service that refused the Host, a size limit raised, a bug fixed). A line
        stored now (or found stored) leaves the file; a line refused again stays with the new
        reason; when the target is failing (down, token refused) the rest stays untried.
        `timeout` bounds one delivery (default request_timeout)."""
        report = ReplayStats(dead_letter=str(self._spool.folder / "dead-letter.jsonl"))
        with self._spool.dead_letters() as letters:
            kept: list[dict[str, Any]] = []
            for n, entry in enumerate(letters.entries):
                outcome = self._deliver(dead_letter_line(entry), timeout or self.request_timeout)
                if outcome.kind in ("delivered", "duplicate"):
                    report.stored += 1
                    report.duplicates += int(outcome.kind == "duplicate")
                    self._log_moved(outcome)
                    continue
                report.last_error = outcome.reason
                if outcome.kind == "reject":
                    report.refused += 1
                    kept.append({**entry, "at": datetime.now(UTC).isoformat(), "reason": outcome.reason})
                    continue
                log.error("recorder: replaying dead letters stopped: %s: %s", self.target.name, outcome.reason)
                kept.extend(letters.entries[n:])  # the target is failing: keep the rest as they are
                break
            letters.entries = kept
        report.kept = len(kept)
        if report.stored or report.kept:
            log.info("recorder: replayed dead letters: %d stored, %d kept in %s", report.stored, report.kept,
                     report.dead_letter)
        return report

    def _failing(self, outcome: Outcome) -> None:
        self._count(retries=1, last_error=outcome.reason)
        if not self._down:
            self._down = True
            # a refused token is the app's configuration, not an outage: say so loudly
            level = logging.ERROR if outcome.blocked else logging.WARNING
            log.log(level, "recorder: %s: %s; trajectories are kept in %s and retried", self.target.name,
                    outcome.reason, self._spool.path)

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        """Exponential backoff with full jitter, at least the server's Retry-After; flush() and
        close() cut it short."""
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        if self._wake.wait(delay):
            self._wake.clear()

    def _timeout(self) -> float:
        if not self._closing.is_set():
            return self.request_timeout
        return max(0.05, min(self.request_timeout, self._deadline - time.monotonic()))

    def _count(self, last_error: str | None = None, **increments: int) -> None:
        with self._stats_lock:
            for name, n in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + n)
            if last_error is not None:
                self._stats.last_error = last_error

    def _drop(self, reason: str) -> bool:
        log.error("recorder: %s", reason)
        self._count(dropped=1, last_error=reason)
        return False


def _body(trajectory: Trajectory, question_id: str | None, gold: list[str] | None) -> bytes:
    """The service's `POST /api/trajectories` body, as one line: the spool stores what is sent."""
    if question_id is not None and not isinstance(question_id, str):
        raise TypeError("question_id must be a string")
    if gold is not None and not (isinstance(gold, list) and all(isinstance(g, str) for g in gold)):
        raise TypeError("gold must be a list of strings")
    return (b'{"trajectory":' + trajectory.to_json().encode() + b',"question_id":' + json.dumps(question_id).encode()
            + b',"gold":' + json.dumps(gold).encode() + b"}")


def _default_spool_dir(target: str) -> Path:
    from rankact.agent.llm.model_files import cache_root

    # one folder per target, so a backlog is never replayed into another service
    return cache_root() / "recorder" / hashlib.sha256(target.rstrip("/").encode()).hexdigest()[:12]
