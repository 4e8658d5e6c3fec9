"""The recorder's spool: an append-only JSON Lines journal on local disk, one line per
trajectory not yet delivered, so nothing recorded is lost when the service is down, the
queue is long or the process is killed.

Every recorded trajectory is written here first (one `write` of one whole line, so a killed
process leaves whole lines, plus at most a torn last one that was never acknowledged); the
recorder's thread reads lines from the front, delivers them and acknowledges them. When it
has caught up the file is truncated; a long backlog is compacted by copying the tail.

A folder holds one spool per live process: `spool-N.jsonl`, claimed by an exclusive `flock`
on `spool-N.lock` (several web workers can share a folder). A new spool adopts the lines of
spools whose process is gone, so a crashed worker's backlog is sent by whoever starts next.
Lines the target refused for good go to `dead-letter.jsonl` with the reason (`dead_letters()`
reads and rewrites it, under `dead-letter.lock`, for a replay).

The folder must be private, as the journal holds what the app sends with its token: a folder
that is a symlink, that another user owns, or that others may write without the sticky bit is
refused (`private_files.SpoolFolderError`), a new one is made 0700, and every file in it is
opened without following a symlink and must be a regular file of ours with one link.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rankact.alignment.feedback.recorder.private_files import new_file, open_own, private_folder, read_own

_CHUNK = 1 << 20
_MAX_SPOOLS = 1024
DEAD_LETTER = "dead-letter.jsonl"
DEAD_LETTER_LOCK = "dead-letter.lock"


class Spool:
    """One process's journal in `folder` (see the module docstring)."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 1 << 30, compact_bytes: int = 64 << 20,
                 durable: bool = False) -> None:
        self.folder = Path(folder).expanduser()
        private_folder(self.folder)
        self.max_bytes = max_bytes
        self.compact_bytes = compact_bytes
        self.durable = durable  # fsync each line in append(), not only in sync()
        self._lock = threading.Lock()
        self._dead_lock = threading.Lock()  # dead-letter writes and replays in this process
        for name in (DEAD_LETTER, DEAD_LETTER_LOCK):  # refuse a planted one now, not at the first refusal
            if os.path.lexists(self.folder / name):
                os.close(open_own(self.folder / name, os.O_RDONLY))
        self._lock_fd, self.path = self._claim()
        self._fd = open_own(self.path, os.O_RDWR | os.O_APPEND, create=True)
        self._size = _cut_torn_tail(self._fd)
        self._read_at = 0  # the first byte not yet acknowledged
        self.adopted = self._adopt_orphans()
        self.pending = _count_lines(self._fd, self._size)  # lines not yet acknowledged

    # -- claiming a spool, adopting dead processes' spools --

    def _claim(self) -> tuple[int, Path]:
        for n in range(_MAX_SPOOLS):
            fd = _try_lock(self.folder / f"spool-{n}.lock")
            if fd is not None:
                return fd, self.folder / f"spool-{n}.jsonl"
        raise OSError(f"{self.folder}: all {_MAX_SPOOLS} spools are in use")

    def _adopt_orphans(self) -> int:
        """Move the lines of every spool no live process holds into ours. Lock files are never
        deleted, so holding one's lock means its data file is ours to read and remove."""
        adopted = 0
        for lock_path in sorted(self.folder.glob("spool-*.lock")):
            data_path = lock_path.with_suffix(".jsonl")
            if data_path == self.path or not os.path.lexists(data_path):
                continue
            fd = _try_lock(lock_path)
            if fd is None:
                continue  # a live process owns it
            try:
                data = read_own(data_path)
                data = data[: data.rfind(b"\n") + 1]  # drop a torn last line
                if data:
                    os.write(self._fd, data)
                    os.fsync(self._fd)
                    self._size += len(data)
                    adopted += data.count(b"\n")
                data_path.unlink()
            finally:
                os.close(fd)
        return adopted

    # -- the journal --

    def append(self, line: bytes) -> bool:
        """Write one line (no newline in it); False when the spool is full. OSError passes up."""
        record = line + b"\n"
        with self._lock:
            if self._size + len(record) > self.max_bytes:
                return False
            written = os.write(self._fd, record)
            if written != len(record):  # a short write to a regular file: disk full
                os.ftruncate(self._fd, self._size)
                raise OSError(f"short write to {self.path} (disk full?)")
            if self.durable:
                os.fsync(self._fd)
            self._size += len(record)
            self.pending += 1
        return True

    def sync(self) -> None:
        os.fsync(self._fd)

    def peek(self, max_lines: int) -> list[bytes]:
        """Up to `max_lines` whole lines from the front, without acknowledging them."""
        lines: list[bytes] = []
        at, buffer = self._read_at, b""
        with self._lock:
            end = self._size
        while len(lines) < max_lines and at < end:
            chunk = os.pread(self._fd, min(_CHUNK, end - at), at)
            if not chunk:
                break
            at += len(chunk)
            buffer += chunk
            *whole, buffer = buffer.split(b"\n")
            lines.extend(whole)
        return lines[:max_lines]

    def ack(self, line: bytes) -> None:
        """The front line is done with (delivered or dead-lettered)."""
        with self._lock:
            self._read_at += len(line) + 1
            self.pending -= 1
            if self._read_at >= self._size:  # caught up: start the file afresh
                os.ftruncate(self._fd, 0)
                self._size = self._read_at = 0
            elif self._read_at >= self.compact_bytes:
                self._compact()

    def _compact(self) -> None:
        """Replace the file by its unacknowledged tail (called with the lock held)."""
        tail = self.path.with_suffix(".tmp")
        with new_file(tail) as out:
            at = self._read_at
            while at < self._size:
                chunk = os.pread(self._fd, min(_CHUNK, self._size - at), at)
                out.write(chunk)
                at += len(chunk)
        os.replace(tail, self.path)
        os.close(self._fd)
        self._fd = open_own(self.path, os.O_RDWR | os.O_APPEND)
        self._size -= self._read_at
        self._read_at = 0

    def dead_letter(self, line: bytes, reason: str) -> Path:
        """Keep a line the target refused for good, with why, in `dead-letter.jsonl`."""
        try:
            body: object = json.loads(line)
        except ValueError:
            body = line.decode("utf-8", errors="replace")
        entry = json.dumps({"at": datetime.now(UTC).isoformat(), "reason": reason, "body": body})
        path = self.folder / DEAD_LETTER
        with self._dead_letter_locked():
            fd = open_own(path, os.O_WRONLY | os.O_APPEND, create=True)
            try:
                os.write(fd, entry.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    @contextmanager
    def dead_letters(self) -> Iterator[DeadLetters]:
        """The dead-letter entries, locked against every writer (this process's and others');
        what `entries` holds on a clean exit replaces the file (atomically)."""
        path = self.folder / DEAD_LETTER
        with self._dead_letter_locked():
            data = read_own(path) if os.path.lexists(path) else b""
            letters = DeadLetters([_entry(line) for line in data.splitlines() if line.strip()])
            before = list(letters.entries)
            yield letters
            if letters.entries == before:
                return
            if not letters.entries:
                os.unlink(path)
                return
            fresh = path.with_suffix(".tmp")
            with new_file(fresh) as out:
                for entry in letters.entries:
                    out.write(json.dumps(entry).encode() + b"\n")
            os.replace(fresh, path)

    @contextmanager
    def _dead_letter_locked(self) -> Iterator[None]:
        with self._dead_lock:
            fd = open_own(self.folder / DEAD_LETTER_LOCK, os.O_RDWR, create=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def close(self) -> None:
        """Release the file and the claim; what is pending stays for the next spool here."""
        with self._lock:
            if self._fd < 0:
                return
            os.fsync(self._fd)
            os.close(self._fd)
            os.close(self._lock_fd)  # releases the flock
            self._fd = self._lock_fd = -1


@dataclass
class DeadLetters:
    """The dead-letter file's entries: {"at", "reason", "body"} each (body: the line's JSON)."""
    entries: list[dict[str, Any]] = field(default_factory=list)


def dead_letter_line(entry: dict[str, Any]) -> bytes:
    """The spool line a dead-letter entry was made from (the same JSON, compact)."""
    body = entry.get("body")
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()  # ASCII: a lone surrogate stays escaped


def _entry(line: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or "body" not in entry:  # a damaged entry: kept, replayed as it is
        return {"at": None, "reason": "unreadable dead-letter entry", "body": line.decode("utf-8", "replace")}
    return entry


def _try_lock(path: Path) -> int | None:
    fd = open_own(path, os.O_RDWR, create=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _cut_torn_tail(fd: int) -> int:
    """Truncate a last line without its newline (a write cut by a crash); return the size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    return end


def _count_lines(fd: int, size: int) -> int:
    count, at = 0, 0
    while at < size:
        chunk = os.pread(fd, min(_CHUNK, size - at), at)
        if not chunk:
            break
        count += chunk.count(b"\n")
        at += len(chunk)
    return count
