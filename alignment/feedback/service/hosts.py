"""Answer only the Host names the service is meant for. A web page on another site can make a
browser send requests to a local server through DNS rebinding (its own name, resolved to
127.0.0.1); those requests carry that site's name in `Host`, so refusing unknown names
closes the door. Loopback names are allowed by default; `rankact serve --allowed-host NAME`
adds the name people use to reach the server ("*" allows any, for use behind a proxy that checks).
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def host_name(host: str) -> str:
    """The name part of a Host header value, lower-cased: "[::1]:8000" -> "[::1]", "A.b:80" -> "a.b"."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") > 1:  # a bare IPv6 address
        return f"[{host}]"
    return host.split(":", 1)[0].rstrip(".")


def allowed_host_names(names: Iterable[str]) -> set[str]:
    """The names to answer, or ValueError for one that names no host: an empty name would
    serve requests that carry no Host header at all, which is not what anyone means."""
    allowed = set()
    for name in names:
        if not host_name(name):
            raise ValueError(f"--allowed-host {name!r} names no host; give the name people use to reach "
                             "the service (e.g. rank.example or 10.0.0.5), or '*' to answer any")
        allowed.add(host_name(name))
    return allowed


class AllowedHostsMiddleware:
    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = allowed_host_names(allowed)
        self.any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        name = host_name(Headers(scope=scope).get("host", ""))
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = name if len(name) <= 80 and name.isprintable() else repr(name[:80])
        detail = ("a request without a Host header is not served" if not name else
                  f"host {shown} is not served here (allowed: {', '.join(sorted(self.allowed))}); "
                  f"start the service with --allowed-host {shown} to allow it")
        payload = json.dumps({"detail": detail}).encode()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
