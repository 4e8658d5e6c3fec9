"""An httpx transport whose every socket operation stops at one deadline for the whole call.

httpx's timeouts are per operation: a server that sends its headers one byte every 0.5 s
never trips a 3 s read timeout, and kept `http_get` busy for minutes. Here connect, TLS
handshake, every write and every read get at most the time left until the deadline, and
fail with httpcore's own timeout errors (which httpx maps to `httpx.TimeoutException`)
once it has passed. Nothing runs in another thread, so nothing outlives the call.

Two ways to set the deadline: `DeadlineTransport(deadline)` bounds everything sent through
the transport by one `time.monotonic()` value (`http_get` makes one transport per call);
`DeadlineTransport(per_request=seconds)` gives each request its own deadline, from when it is
sent to the last byte of its reply, for a long-lived client (the served-model backends). The
per-request deadline is kept per thread: a sync client sends a request and reads its reply on
one thread, and a pooled connection reused by another thread reads under that thread's deadline.
"""
from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Callable

import httpcore
import httpx


def _left(deadline: Callable[[], float], timeout: float | None, error: type[Exception]) -> float:
    left = deadline() - time.monotonic()
    if left <= 0:
        raise error("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Callable[[], float]):
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
    def __init__(self, deadline: Callable[[], float]):
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
        time.sleep(max(0.0, min(seconds, self._deadline() - time.monotonic())))


class DeadlineTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` (no proxies, certificates verified) bounded by `deadline` (a
    `time.monotonic()` value) for everything sent through it, or by `per_request` seconds for
    each request (see the module docstring). `trust_env` lets SSL_CERT_FILE / SSL_CERT_DIR
    choose the certificates."""

    def __init__(self, deadline: float | None = None, *, per_request: float | None = None,
                 trust_env: bool = False):
        if (deadline is None) == (per_request is None):
            raise ValueError("give either a deadline or per_request seconds")
        if per_request is not None and not per_request > 0:
            raise ValueError("per_request must be > 0 seconds")
        super().__init__(trust_env=False)
        self._per_request = per_request
        self._local = threading.local()
        fixed = deadline

        def current() -> float:
            return fixed if fixed is not None else getattr(self._local, "deadline", float("inf"))

        # httpx has no public way to give HTTPTransport a network backend; its pool is the
        # seam (tests/tools/test_redteam_robustness.py fails if a new httpx moves it).
        # httpx's default limits: httpcore's own default of 10 connections would queue the
        # requests of an endpoint pool (8 in flight per endpoint).
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=trust_env),
                                             max_connections=100, max_keepalive_connections=20,
                                             network_backend=_DeadlineBackend(current))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._per_request is not None:
            self._local.deadline = time.monotonic() + self._per_request
        return super().handle_request(request)
