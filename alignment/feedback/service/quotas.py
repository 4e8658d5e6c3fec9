"""Write limits per account: at most N requests with a body per minute and B body bytes per hour.

Counted in memory by the one service process (a restart starts the count afresh), in sliding
windows split into 60 slots, so "per minute" means any 60 s and "per hour" any hour, to the
nearest slot. All calls come from the event loop, one at a time, so no locking is needed.
A refusal carries the seconds until the write would fit: the service answers 429 with that
in `Retry-After`.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class SlidingWindow:
    """At most `limit` units in any `window` seconds (exact to window/slots)."""

    def __init__(self, limit: int, window: float, slots: int = 60) -> None:
        self.limit, self.window, self.slot_seconds = limit, window, window / slots
        self.slots = slots
        self._used: deque[list[int]] = deque()  # [slot number, units], oldest first
        self._total = 0

    def _expire(self, now: float) -> int:
        current = int(now // self.slot_seconds)
        while self._used and self._used[0][0] <= current - self.slots:
            self._total -= self._used.popleft()[1]
        return current

    def wait_for(self, units: int, now: float) -> float:
        """Seconds until `units` more fit (0: they fit now)."""
        self._expire(now)
        if self._total + units <= self.limit:
            return 0.0
        over = self._total + units - self.limit
        for slot, used in self._used:  # the oldest slots leave the window first
            over -= used
            if over <= 0:
                return max((slot + self.slots) * self.slot_seconds - now, 0.0)
        return self.window  # more than the whole window holds

    def charge(self, units: int, now: float) -> None:
        current = self._expire(now)
        if self._used and self._used[-1][0] == current:
            self._used[-1][1] += units
        else:
            self._used.append([current, units])
        self._total += units


@dataclass(frozen=True)
class Refusal:
    retry_after: int  # whole seconds, at least 1
    detail: str


class WriteQuotas:
    """The write limits of every account; 0 turns a limit off."""

    def __init__(self, writes_per_minute: int, bytes_per_hour: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writes_per_minute, self.bytes_per_hour, self.clock = writes_per_minute, bytes_per_hour, clock
        self._writes: dict[str, SlidingWindow] = {}
        self._bytes: dict[str, SlidingWindow] = {}

    def admit(self, account: str, announced_bytes: int = 0) -> Refusal | None:
        """Count one write of `account`, or say why it must wait. `announced_bytes` (the
        Content-Length) is checked against the byte quota before any byte is read."""
        now = self.clock()
        if self.bytes_per_hour and announced_bytes:
            refusal = self._bytes_refusal(account, announced_bytes, now)
            if refusal:
                return refusal
        if self.writes_per_minute:
            window = self._writes.setdefault(account, SlidingWindow(self.writes_per_minute, 60.0))
            wait = window.wait_for(1, now)
            if wait:
                return Refusal(_seconds(wait), f"too many writes: {account!r} may send {self.writes_per_minute} "
                                                f"a minute; retry in {_seconds(wait)} s")
            window.charge(1, now)
        return None

    def take_bytes(self, account: str, count: int) -> Refusal | None:
        """Charge `count` received body bytes to `account`, or refuse them (nothing charged)."""
        if not self.bytes_per_hour:
            return None
        now = self.clock()
        refusal = self._bytes_refusal(account, count, now)
        if refusal is None:
            self._bytes[account].charge(count, now)
        return refusal

    def _bytes_refusal(self, account: str, count: int, now: float) -> Refusal | None:
        window = self._bytes.setdefault(account, SlidingWindow(self.bytes_per_hour, 3600.0))
        wait = window.wait_for(count, now)
        if not wait:
            return None
        return Refusal(_seconds(wait), f"write quota used up: {account!r} may send {self.bytes_per_hour} bytes "
                                       f"an hour; retry in {_seconds(wait)} s")


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
