"""An httpx transport whose every socket operation stops at one deadline for the whole call.

httpx's timeouts are per operation: a server that sends its headers one byte every 0.5 s
never trips a 3 s read timeout, and kept `http_get` busy for minutes. Here connect, TLS
handshake, every write and every read get at most the time left until the deadline, and
fail with httpcore's own timeout errors (which httpx maps to `httpx.TimeoutException`)
once it has passed. Nothing runs in another thread, so nothing outlives the call.
"""
from __future__ import annotations

import ssl
import time
import typing

import httpcore
import httpx


def _left(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float):
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: float):
        self._inner, self._deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by this transport")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self._deadline - time.monotonic())))


class DeadlineTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` (no proxies, certificates verified) bounded by `deadline`
    (a `time.monotonic()` value) for everything sent through it."""

    def __init__(self, deadline: float):
        super().__init__(trust_env=False)
        # httpx has no public way to give HTTPTransport a network backend; its pool is the
        # seam (tests/tools/test_redteam_robustness.py fails if a new httpx moves it).
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                             network_backend=_DeadlineBackend(deadline))
