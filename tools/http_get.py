"""`http_get`: fetch a URL for the agent without letting it reach the machine's own network.

SSRF defence, checked on the first request and again on every redirect hop:
- only http/https;
- the host is resolved and the call is refused if ANY address is loopback, private,
  link-local, multicast, reserved, unspecified or otherwise not globally routable
  (IPv4-mapped, NAT64, 6to4 and Teredo IPv6 forms are unwrapped first), or the host is a
  cloud metadata name, unless `allow_private=True`;
- the connection goes to the address that was checked (the URL's host is replaced by that
  IP; `Host` header and TLS SNI/certificate check keep the name), so a DNS answer that
  changes between check and connect (DNS rebinding) cannot redirect it. Proxies from the
  environment are ignored for the same reason (`trust_env=False`).
The body is streamed and cut at `max_bytes`; the whole call (connect, TLS, headers, body,
redirects) is bounded by `timeout`: every socket operation gets only the time left
(`rankact.tools.deadline_transport`), so a server that dribbles its headers cannot hold it longer.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from rankact.tools.base import Tool, ToolExecutionError

if TYPE_CHECKING:  # httpx is imported on use: importing rankact.tools (the agent does) must stay cheap
    import httpx

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = {301, 302, 303, 307, 308}
_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "iframe", "head"]

Resolver = Callable[[str, int], list[str]]


class HttpGetRefused(ToolExecutionError):
    """The URL (or a redirect hop) points somewhere the tool may not go."""


def resolve(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolExecutionError(f"could not resolve host {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def blocked_reason(address: str) -> str | None:
    """Why `address` must not be contacted, or None when it is a public address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    candidates = []
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that IPv4 address: check it too.
        if ip.ipv4_mapped:
            candidates.append(ip.ipv4_mapped)
        if ip.sixtofour:
            candidates.append(ip.sixtofour)
        if ip.teredo:
            candidates.extend(ip.teredo)
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    candidates.append(ip)  # after the embedded IPv4 address, which gives the clearer reason
    for cand in candidates:
        if cand in METADATA_ADDRESSES:
            return f"{cand} is a cloud metadata address"
        for attr in ("is_unspecified", "is_loopback", "is_link_local", "is_multicast", "is_reserved",
                     "is_private"):
            if getattr(cand, attr):
                return f"{cand} is {attr[3:].replace('_', '-')}"
        if not cand.is_global:
            return f"{cand} is not a public address"
    return None


class HttpGetArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="absolute http:// or https:// URL to fetch")


class HttpGetTool(Tool):
    """GET a URL and return its readable text (HTML as visible text, JSON pretty-printed)."""

    name = "http_get"
    description = "Fetch a web page by its http(s) URL and return its readable text."
    args_model = HttpGetArgs

    def __init__(self, allow_private: bool = False, max_bytes: int = 200_000, timeout: float = 10,
                 transport: httpx.BaseTransport | None = None, *, max_redirects: int = 5,
                 max_chars: int = 20_000, resolver: Resolver | None = None):
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout = float(timeout)
        self.transport = transport
        self.max_redirects = max_redirects
        self.max_chars = max_chars
        self._resolver = resolver

    # ---- checks ------------------------------------------------------------------------
    def _pinned(self, url: httpx.URL) -> tuple[httpx.URL, dict[str, str], dict]:
        """Check `url` and return (the URL with its host replaced by a checked IP, headers, extensions)."""
        if url.scheme not in ("http", "https"):
            raise HttpGetRefused(f"only http and https URLs are allowed, not {url.scheme or 'no scheme'!r}")
        host = url.host
        if not host:
            raise HttpGetRefused(f"URL has no host: {str(url)!r}")
        if not self.allow_private and host.rstrip(".").lower() in METADATA_HOSTS:
            raise HttpGetRefused(f"refusing {host}: cloud metadata host")
        port = url.port or (443 if url.scheme == "https" else 80)
        # looked up at call time so tests can monkeypatch `rankact.tools.http_get.resolve`
        addresses = (self._resolver or resolve)(host, port)
        if not addresses:
            raise ToolExecutionError(f"could not resolve host {host!r}")
        if not self.allow_private:
            for address in addresses:
                reason = blocked_reason(address)
                if reason:
                    raise HttpGetRefused(f"refusing {host}: {reason} (private and local addresses are blocked)")
        # IPv4 first: many hosts resolve to IPv6 too but have no IPv6 route
        ip = min(addresses, key=lambda a: ":" in a).split("%")[0]
        host_header = host if url.port is None else f"{host}:{url.port}"
        if ":" in host:  # IPv6 literal
            host_header = f"[{host}]" if url.port is None else f"[{host}]:{url.port}"
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        return url.copy_with(host=ip), {"Host": host_header}, extensions

    # ---- fetching ----------------------------------------------------------------------
    def run(self, url: str) -> str:
        import httpx

        from rankact.tools.deadline_transport import DeadlineTransport

        try:
            current = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ToolExecutionError(f"invalid URL {url!r}: {exc}") from None
        deadline = time.monotonic() + self.timeout
        # every connect, read and write stops at the deadline (httpx's own timeouts are per read)
        transport = self.transport or DeadlineTransport(deadline)
        client = httpx.Client(transport=transport, follow_redirects=False, trust_env=False,
                              timeout=httpx.Timeout(self.timeout),
                              headers={"User-Agent": "rankact-http-get/0.1", "Accept": "*/*"})
        with client:
            for _hop in range(self.max_redirects + 1):
                target, headers, extensions = self._pinned(current)
                if time.monotonic() > deadline:  # name resolution is bounded by the system's resolver only
                    raise ToolExecutionError(f"timed out fetching {current} (after {self.timeout:g} s)")
                try:
                    with client.stream("GET", target, headers=headers, extensions=extensions) as response:
                        if response.status_code in _REDIRECTS and "location" in response.headers:
                            current = current.join(response.headers["location"])
                            continue
                        body, truncated = self._read(response, deadline)
                        return self._render(response, body, truncated, current)
                except httpx.TimeoutException:
                    raise ToolExecutionError(f"timed out fetching {current} (after {self.timeout:g} s)") from None
                except httpx.HTTPError as exc:
                    raise ToolExecutionError(f"could not fetch {current}: {type(exc).__name__}: {exc}") from None
        raise ToolExecutionError(f"too many redirects (more than {self.max_redirects})")

    def _read(self, response: httpx.Response, deadline: float) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():  # decoded bytes: a compression bomb is cut here too
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
            if time.monotonic() > deadline:
                raise ToolExecutionError(f"timed out reading the response (after {self.timeout:g} s)")
        return b"".join(chunks), False

    def _render(self, response: httpx.Response, body: bytes, truncated: bool, url: httpx.URL) -> str:
        if response.status_code >= 400:
            snippet = " ".join(body[:300].decode("utf-8", errors="replace").split())
            raise ToolExecutionError(f"HTTP {response.status_code} {response.reason_phrase} for {url}"
                                     + (f": {snippet}" if snippet else ""))
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
        if ctype in ("text/html", "application/xhtml+xml") or (not ctype and "<html" in text[:1000].lower()):
            text = html_to_text(text)
        elif ctype == "application/json" or ctype.endswith("+json"):
            try:
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            except ValueError:
                pass  # truncated or malformed JSON: show it as is
        elif not (ctype.startswith("text/") or ctype.endswith("xml") or ctype in ("", "application/javascript")):
            raise ToolExecutionError(f"unsupported content type {ctype!r} (not text) at {url}")
        if "\x00" in text:
            raise ToolExecutionError(f"binary content at {url}")
        note = f"[truncated: only the first {self.max_bytes} bytes were read]" if truncated else ""
        if len(text) > self.max_chars:
            text, note = text[: self.max_chars], f"[truncated: only the first {self.max_chars} characters are shown]"
        return f"{text}\n{note}" if note else text


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: title first, scripts/styles dropped, blank lines squeezed."""
    from bs4 import BeautifulSoup  # imported here: only this tool needs it

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    lines = (" ".join(line.split()) for line in soup.get_text("\n").splitlines())
    body = "\n".join(line for line in lines if line)
    return f"{title}\n\n{body}" if title and not body.startswith(title) else body


http_get = HttpGetTool()
