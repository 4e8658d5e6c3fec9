"""How much a caller may send: a body size limit per route, a time limit for a body to arrive,
and per-account write limits (requests per minute, bytes per hour).

Defaults suit one service on a small machine:

    POST /api/trajectories   8 MiB      a long tool-using run with token ids is well under 1 MiB
    POST /api/rankings       1 MiB      a ranking is ids, flags and a comment
    POST /api/feedback       64 KiB     one end user's vote
    any other body route     64 KiB     (none today; a new route is small until it says otherwise)

    writes per account       600 a minute          (0: no limit)
    bytes per account        256 MiB an hour       (0: no limit)
    a body must arrive in    60 s

`rankact serve --max-body-bytes N` makes N the largest body any route accepts (trajectories get
exactly N); `--max-body-bytes feedback=N` sets one route (by the last part of its path).
"""
from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field, model_validator

KIB, MIB = 1024, 1024 * 1024
DEFAULT_BODY_BYTES = {"/api/trajectories": 8 * MIB, "/api/rankings": 1 * MIB, "/api/feedback": 64 * KIB}
OTHER_ROUTE_BODY_BYTES = 64 * KIB


class ServiceLimits(BaseModel):
    body_bytes: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_BODY_BYTES),
                                       description="the largest body each route path accepts")
    writes_per_minute: int = Field(600, ge=0, description="requests with a body per account per minute; 0: no limit")
    write_bytes_per_hour: int = Field(256 * MIB, ge=0, description="body bytes per account per hour; 0: no limit")
    body_seconds: float = Field(60.0, gt=0, description="a request body must arrive within this many seconds")

    @model_validator(mode="after")
    def _consistent(self) -> ServiceLimits:
        for path, size in self.body_bytes.items():
            if size < 1:
                raise ValueError(f"the body limit of {path} must be at least 1 byte, not {size}")
        if self.write_bytes_per_hour and self.write_bytes_per_hour < max(self.body_bytes.values(), default=0):
            # otherwise the largest allowed body could never be sent
            raise ValueError(f"the hourly write quota ({self.write_bytes_per_hour} bytes) is smaller than the "
                             f"largest body a route accepts ({max(self.body_bytes.values())} bytes)")
        return self

    def body_limit(self, path: str) -> int:
        return self.body_bytes.get(path, OTHER_ROUTE_BODY_BYTES)


def body_limits_from_options(values: Iterable[str]) -> dict[str, int]:
    """`--max-body-bytes` values: "N" caps every route at N (trajectories get N), "NAME=N" sets the
    route whose path ends in NAME. Later values win. ValueError with a one-line message."""
    limits = dict(DEFAULT_BODY_BYTES)
    by_name = {path.rsplit("/", 1)[-1]: path for path in limits}
    for value in values:
        name, equals, number = value.rpartition("=")
        size = _size(number, value)
        if not equals:
            limits = {path: size if path == "/api/trajectories" else min(size, default)
                      for path, default in DEFAULT_BODY_BYTES.items()}
            continue
        if name not in by_name:
            raise ValueError(f"--max-body-bytes {value!r}: no route {name!r}; one of {', '.join(sorted(by_name))}")
        limits[by_name[name]] = size
    return limits


def _size(number: str, value: str) -> int:
    try:
        size = int(number.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"--max-body-bytes {value!r}: give a number of bytes, e.g. 8388608 "
                         f"or trajectories=8388608") from None
    if size < 1:
        raise ValueError(f"--max-body-bytes {value!r}: the limit must be at least 1 byte")
    return size
