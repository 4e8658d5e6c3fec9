"""The moments the store accepts: from 1970-01-01 UTC to a few minutes from now.

Both databases must store a moment and give it back: PostgreSQL keeps `0001-01-01T00:00+05:00`
as a date in 1 BC, which the driver then cannot read back, and SQLite keeps whatever text it is
given. So every timestamp that enters (a trajectory's `created_at`, a ranking's, an end user's
vote's) is converted to UTC and checked against this range first; a client clock a little ahead
is fine (`CLOCK_SKEW`), a moment far ahead would outrank every real later change."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# What a read accepts from a row stored before this check: the latest moment every driver reads.
LATEST_READABLE = datetime(9999, 12, 31, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)


def checked_utc(moment: datetime, what: str, *, now: datetime | None = None) -> datetime:
    """`moment` in UTC (a naive one is taken as UTC); ValueError with a one-line message when it
    lies before 1970 or more than CLOCK_SKEW ahead of `now`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is a moment in year 0
        raise ValueError(f"{what} {moment.isoformat()} lies before {EARLIEST:%Y-%m-%d}") from None
    now = now or datetime.now(UTC)
    if utc < EARLIEST:
        raise ValueError(f"{what} {moment.isoformat()} lies before {EARLIEST:%Y-%m-%d}")
    if utc > now + CLOCK_SKEW:
        raise ValueError(f"{what} {moment.isoformat()} is in the future (more than "
                         f"{int(CLOCK_SKEW.total_seconds() // 60)} minutes ahead of the server's clock)")
    return utc
