"""`EndpointPool`: one served model behind several OpenAI-compatible endpoints.

`--model "http://a:8000/v1,http://b:8000/v1"` (a comma list inside ONE `--model`) is one
pool; `rankact eval --model X --model Y` still compares two models. The pool is an httpx
transport (the seam httpx offers for this), so `OpenAICompatibleLLM` and `ServedTokensLLM`
use it unchanged: each request goes to the next endpoint in round-robin order that has a
free slot (`max_in_flight` requests per endpoint; a caller waits for a slot rather than
overload a server). An endpoint that cannot be reached or answers 429/5xx is benched for
`cooldown` seconds (doubled for each failure in a row, up to `MAX_COOLDOWN`, so an endpoint
that keeps hanging costs a wait rarely) and the request moves on to the others; a benched
endpoint is only tried again when every healthy one failed for that request. When all fail
the request raises one `EndpointsFailed` naming each endpoint's failure ("answered HTTP
429", "cannot connect ..."), and the backend's bounded retries with backoff
(`OpenAICompatibleLLM._send`) sit on top.

A reply is also judged after its headers: its body is capped at `max_reply_bytes`
(`ReplyTooLarge`), and an endpoint whose body stalls, breaks off or runs past the cap is
benched as it happens, so the backend's retry goes elsewhere. A reply that arrives whole but
makes no sense (200 with HTML, ids outside the vocabulary) is judged by the backend, which
benches its endpoint with `bench_reply`. The whole-request deadline is the inner transport's
(`rankact.tools.deadline_transport`, set up by the backend). `pinned(i)` sends a request to
endpoint i only: a backend probes each endpoint that way.

Requests are not pinned to an endpoint, token-in/token-out runs included: every request
carries the whole prompt (ids or messages), so with the same weights on every endpoint a
trajectory is the same wherever each turn runs; pinning would only help prefix caching.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import httpx

from rankact.agent.errors import RankactError

RETRY_ELSEWHERE = {408, 425, 429, 500, 502, 503, 504}
ERROR_PAGE_BYTES = 65536  # of a 429/5xx reply: enough for its message
MAX_COOLDOWN = 600.0  # seconds: the longest an endpoint failing again and again is left out
PIN = "rankact_pin"  # request extension: the index of the one endpoint to use


class EndpointsFailed(httpx.TransportError, RankactError):
    """Every endpoint of the pool failed this request; `answered` is True when at least one of
    them was reached and answered (an HTTP error, a bad reply), so it is not an outage."""

    def __init__(self, message: str, *, answered: bool, request: httpx.Request) -> None:
        super().__init__(message, request=request)
        self.answered = answered


class ReplyTooLarge(httpx.TransportError, RankactError):
    """A reply body over the pool's `max_reply_bytes`. Both are httpx errors because they are
    raised through httpx; both are in the error tree, so one that escapes is one line."""


def _error_page(response: httpx.Response, request: httpx.Request) -> httpx.Response:
    """The start of an error reply (its message and headers are all the backend reads), as a
    response that no longer holds the connection."""
    body = b""
    for chunk in response.stream:
        body += chunk
        if len(body) >= ERROR_PAGE_BYTES:
            break
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=body[:ERROR_PAGE_BYTES], request=request,
                          extensions=response.extensions)


def pinned(index: int) -> dict:
    """Request extensions that send a request to endpoint `index` only."""
    return {PIN: index}


def describe_failure(exc: Exception) -> str:
    """An endpoint's failure in words that say whether it was reached."""
    name = exc.__class__.__name__
    if isinstance(exc, ReplyTooLarge):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({name}: {exc})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({name}: {exc})"
    return f"connection failed ({name}: {exc})"


def split_endpoints(spec: str) -> list[str]:
    """The endpoints of a `--model` value: one URL, or several separated by commas."""
    return [part.strip().rstrip("/") for part in spec.split(",") if part.strip()]


class _Endpoint:
    def __init__(self, base_url: str) -> None:
        self.url = httpx.URL(base_url)
        self.in_flight = 0
        self.benched_until = 0.0
        self.last_error = ""
        self.answered = False  # its last failure came from a reply, not from silence
        self.failures = 0  # in a row; a good reply (`reply_ok`) resets it


class _GuardedStream(httpx.SyncByteStream):
    """The response body: capped at `limit` bytes; a failure while it is read benches the
    endpoint (`on_error`); closing it frees the endpoint's slot (a streamed reply holds it)."""

    def __init__(self, inner: httpx.SyncByteStream, release, on_error, limit: int | None) -> None:
        self.inner, self.release, self.released = inner, release, False
        self.on_error, self.limit = on_error, limit

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        try:
            for chunk in self.inner:
                size += len(chunk)
                if self.limit is not None and size > self.limit:
                    raise ReplyTooLarge(f"sent a reply larger than {self.limit} bytes (the cap, max_reply_bytes)")
                yield chunk
        except httpx.TransportError as exc:
            self.on_error(exc)
            raise

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if not self.released:
                self.released = True
                self.release()


class EndpointPool(httpx.BaseTransport):
    """Requests addressed to `endpoints[0]` are sent to whichever endpoint is next (see module)."""

    def __init__(self, endpoints: Sequence[str], *, max_in_flight: int | None = 8, cooldown: float = 30.0,
                 transport: httpx.BaseTransport | None = None, max_reply_bytes: int | None = None) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one URL")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1 (or None: no limit)")
        if max_reply_bytes is not None and max_reply_bytes < 1:
            raise ValueError("max_reply_bytes must be >= 1 (or None: no cap)")
        self.endpoints = [_Endpoint(url) for url in endpoints]
        self.max_in_flight = max_in_flight  # None: no limit
        self.max_reply_bytes = max_reply_bytes
        self.cooldown = cooldown
        self.inner = transport or httpx.HTTPTransport()
        self._next = 0
        self._slots = threading.Condition()

    @property
    def base_url(self) -> str:
        """The URL the client addresses; requests are rewritten from it to the chosen endpoint."""
        return str(self.endpoints[0].url)

    def describe(self) -> str:
        return ", ".join(str(e.url) for e in self.endpoints)

    # ---- choosing --------------------------------------------------------------------
    def _acquire(self, tried: set[int], only: int | None = None) -> _Endpoint | None:
        """The next untried endpoint with a free slot (healthy ones first), waiting for a slot
        if all are busy; None when every endpoint was tried. `only`: that endpoint or none."""
        with self._slots:
            while True:
                untried = [i for i in range(len(self.endpoints)) if i not in tried and only in (None, i)]
                if not untried:
                    return None
                now = time.monotonic()
                healthy = [i for i in untried if self.endpoints[i].benched_until <= now]
                # Round-robin over the healthy ones; benched ones only when no healthy one is left.
                order = (sorted(healthy, key=lambda i: (i - self._next) % len(self.endpoints)) if healthy
                         else sorted(untried, key=lambda i: self.endpoints[i].benched_until))
                for i in order:
                    if self.max_in_flight is None or self.endpoints[i].in_flight < self.max_in_flight:
                        self.endpoints[i].in_flight += 1
                        self._next = (i + 1) % len(self.endpoints)
                        tried.add(i)
                        return self.endpoints[i]
                self._slots.wait()

    def _release(self, endpoint: _Endpoint) -> None:
        with self._slots:
            endpoint.in_flight -= 1
            self._slots.notify_all()

    def _bench(self, endpoint: _Endpoint, why: str, answered: bool) -> None:
        with self._slots:
            endpoint.failures += 1
            wait = min(self.cooldown * 2 ** min(endpoint.failures - 1, 16), max(self.cooldown, MAX_COOLDOWN))
            endpoint.benched_until = time.monotonic() + wait
            endpoint.last_error, endpoint.answered = why, answered

    def reply_ok(self, response: httpx.Response) -> None:
        """The backend read a good reply from this endpoint: its failures in a row start again."""
        for endpoint in self.endpoints:
            if str(endpoint.url) == response.extensions.get("rankact_endpoint"):
                with self._slots:
                    endpoint.failures = 0

    def bench_reply(self, response: httpx.Response, why: str) -> str:
        """Bench the endpoint that sent `response` (a reply the backend found malformed);
        returns that endpoint's URL, for the error message."""
        url = response.extensions.get("rankact_endpoint", "")
        for endpoint in self.endpoints:
            if str(endpoint.url) == url:
                self._bench(endpoint, why, answered=True)
        return url

    def _rewrite(self, request: httpx.Request, endpoint: _Endpoint) -> httpx.Request:
        """The same request with the first endpoint's root swapped for this one's (paths
        outside /v1, like llama.cpp's /completion, keep their place beside it)."""
        first = self.endpoints[0].url
        root, path = first.path.removesuffix("/v1").rstrip("/"), request.url.path
        rest = path.removeprefix(root)
        target_root = endpoint.url.path.removesuffix("/v1").rstrip("/")
        url = request.url.copy_with(scheme=endpoint.url.scheme, host=endpoint.url.host, port=endpoint.url.port,
                                    path=target_root + rest)
        headers = httpx.Headers(request.headers)
        headers["host"] = url.netloc.decode("ascii")
        return httpx.Request(request.method, url, headers=headers, content=request.content,
                             extensions=request.extensions)

    # ---- the transport ---------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body is sent again if the first endpoint fails
        tried: set[int] = set()
        only = request.extensions.get(PIN)
        last_response: httpx.Response | None = None
        last_error: httpx.TransportError | None = None
        while (endpoint := self._acquire(tried, only)) is not None:
            try:
                response = self.inner.handle_request(self._rewrite(request, endpoint))
            except httpx.TransportError as exc:
                self._release(endpoint)
                self._bench(endpoint, describe_failure(exc), answered=False)
                last_error = exc
                continue
            if response.status_code in RETRY_ELSEWHERE:
                try:
                    last_response = _error_page(response, request)
                except httpx.TransportError:
                    last_response = None
                finally:
                    response.close()
                    self._release(endpoint)
                self._bench(endpoint, f"answered HTTP {response.status_code}", answered=True)
                continue
            response.extensions = {**response.extensions, "rankact_endpoint": str(endpoint.url)}
            response.stream = _GuardedStream(
                response.stream, lambda e=endpoint: self._release(e),
                lambda exc, e=endpoint: self._bench(e, describe_failure(exc), isinstance(exc, ReplyTooLarge)),
                self.max_reply_bytes)
            return response
        one = len(self.endpoints) == 1 or only is not None
        if one and last_response is not None:
            return last_response  # one endpoint: the backend's retry loop reads Retry-After itself
        if one and last_error is not None:
            raise last_error  # its own error says it best
        tried_here = [e for i, e in enumerate(self.endpoints) if only in (None, i)]
        failures = "; ".join(f"{e.url}: {e.last_error or 'busy'}" for e in tried_here)
        raise EndpointsFailed(f"all {len(tried_here)} endpoints failed ({failures})",
                              answered=any(e.answered for e in tried_here), request=request)

    def close(self) -> None:
        self.inner.close()

    def in_flight(self) -> list[int]:
        with self._slots:
            return [e.in_flight for e in self.endpoints]
