"""`EndpointPool`: one served model behind several OpenAI-compatible endpoints.

`--model "http://a:8000/v1,http://b:8000/v1"` (a comma list inside ONE `--model`) is one
pool; `rankact eval --model X --model Y` still compares two models. The pool is an httpx
transport (the seam httpx offers for this), so `OpenAICompatibleLLM` and `ServedTokensLLM`
use it unchanged: each request goes to the next endpoint in round-robin order that has a
free slot (`max_in_flight` requests per endpoint; a caller waits for a slot rather than
overload a server). An endpoint that cannot be reached or answers 429/5xx is benched for
`cooldown` seconds and the request moves on to the others; a benched endpoint is only tried
again when every healthy one failed for that request. When all fail the request raises one
`httpx.ConnectError` naming each endpoint's failure, and the backend's bounded retries with
backoff (`OpenAICompatibleLLM._send`) sit on top.

Requests are not pinned to an endpoint, token-in/token-out runs included: every request
carries the whole prompt (ids or messages), so with the same weights on every endpoint a
trajectory is the same wherever each turn runs; pinning would only help prefix caching.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import httpx

RETRY_ELSEWHERE = {408, 425, 429, 500, 502, 503, 504}


def split_endpoints(spec: str) -> list[str]:
    """The endpoints of a `--model` value: one URL, or several separated by commas."""
    return [part.strip().rstrip("/") for part in spec.split(",") if part.strip()]


class _Endpoint:
    def __init__(self, base_url: str) -> None:
        self.url = httpx.URL(base_url)
        self.in_flight = 0
        self.benched_until = 0.0
        self.last_error = ""


class _ReleasingStream(httpx.SyncByteStream):
    """The response body; closing it frees the endpoint's slot (a streamed reply holds it)."""

    def __init__(self, inner: httpx.SyncByteStream, release) -> None:
        self.inner, self.release, self.released = inner, release, False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.inner

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if not self.released:
                self.released = True
                self.release()


class EndpointPool(httpx.BaseTransport):
    """Requests addressed to `endpoints[0]` are sent to whichever endpoint is next (see module)."""

    def __init__(self, endpoints: Sequence[str], *, max_in_flight: int = 8, cooldown: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one URL")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.endpoints = [_Endpoint(url) for url in endpoints]
        self.max_in_flight = max_in_flight
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
    def _acquire(self, tried: set[int]) -> _Endpoint | None:
        """The next untried endpoint with a free slot (healthy ones first), waiting for a slot
        if all are busy; None when every endpoint was tried."""
        with self._slots:
            while True:
                untried = [i for i in range(len(self.endpoints)) if i not in tried]
                if not untried:
                    return None
                now = time.monotonic()
                healthy = [i for i in untried if self.endpoints[i].benched_until <= now]
                # Round-robin over the healthy ones; benched ones only when no healthy one is left.
                order = (sorted(healthy, key=lambda i: (i - self._next) % len(self.endpoints)) if healthy
                         else sorted(untried, key=lambda i: self.endpoints[i].benched_until))
                for i in order:
                    if self.endpoints[i].in_flight < self.max_in_flight:
                        self.endpoints[i].in_flight += 1
                        self._next = (i + 1) % len(self.endpoints)
                        tried.add(i)
                        return self.endpoints[i]
                self._slots.wait()

    def _release(self, endpoint: _Endpoint) -> None:
        with self._slots:
            endpoint.in_flight -= 1
            self._slots.notify_all()

    def _bench(self, endpoint: _Endpoint, why: str) -> None:
        with self._slots:
            endpoint.benched_until = time.monotonic() + self.cooldown
            endpoint.last_error = why

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
        last_response: httpx.Response | None = None
        while (endpoint := self._acquire(tried)) is not None:
            try:
                response = self.inner.handle_request(self._rewrite(request, endpoint))
            except httpx.TransportError as exc:
                self._release(endpoint)
                self._bench(endpoint, f"{exc.__class__.__name__}: {exc}")
                continue
            if response.status_code in RETRY_ELSEWHERE:
                response.read()
                response.close()
                self._release(endpoint)
                self._bench(endpoint, f"HTTP {response.status_code}")
                last_response = response
                continue
            response.extensions = {**response.extensions, "rankact_endpoint": str(endpoint.url)}
            response.stream = _ReleasingStream(response.stream, lambda e=endpoint: self._release(e))
            return response
        if last_response is not None and len(self.endpoints) == 1:
            return last_response  # one endpoint: the backend's retry loop reads Retry-After itself
        failures = "; ".join(f"{e.url}: {e.last_error or 'busy'}" for e in self.endpoints)
        raise httpx.ConnectError(f"all {len(self.endpoints)} endpoints failed ({failures})", request=request)

    def close(self) -> None:
        self.inner.close()

    def in_flight(self) -> list[int]:
        with self._slots:
            return [e.in_flight for e in self.endpoints]
