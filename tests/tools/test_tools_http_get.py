"""http_get: SSRF refusals on every hop, the connection pinned to the checked IP, size/time limits,
readable text. A fake resolver and httpx.MockTransport keep it offline; one test uses a real
loopback server."""
from __future__ import annotations

import http.server
import importlib
import json
import threading

import httpx
import pytest

from rankact.tools import HttpGetTool, ToolExecutionError, http_get
from rankact.tools.http_get import HttpGetRefused, blocked_reason

http_get_module = importlib.import_module("rankact.tools.http_get")  # `rankact.tools.http_get` is the tool instance

DNS = {
    "example.com": ["93.184.216.34"],
    "docs.example.org": ["2a04:4e42::1", "151.101.1.1"],
    "localhost": ["127.0.0.1", "::1"],
    "sneaky.example.net": ["8.8.8.8", "10.0.0.5"],  # one public, one private answer
    "rebind.example.net": ["192.168.0.10"],
    "v6mapped.example.net": ["::ffff:127.0.0.1"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    def resolve(host, port):
        try:
            return [str(__import__("ipaddress").ip_address(host))]
        except ValueError:
            pass
        if host not in DNS:
            raise ToolExecutionError(f"could not resolve host {host!r}")
        return DNS[host]

    monkeypatch.setattr(http_get_module, "resolve", resolve)


class Recorder:
    """A MockTransport handler that records requests and serves canned responses by (Host, path)."""

    def __init__(self, routes):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.headers["host"], request.url.path)
        if key not in self.routes:
            return httpx.Response(404, text="not here")
        return self.routes[key](request) if callable(self.routes[key]) else self.routes[key]


def make_tool(routes, **kwargs):
    recorder = Recorder(routes)
    return HttpGetTool(transport=httpx.MockTransport(recorder), **kwargs), recorder


HTML = """<html><head><title>Example Domain</title><style>p{color:red}</style>
<script>var secret = "do not show";</script></head>
<body><h1>Example   Domain</h1><p>This domain is for use in <a href="/x">examples</a>.</p>
<noscript>enable js</noscript></body></html>"""


def test_html_becomes_visible_text_and_connection_is_pinned_to_checked_ip():
    tool, rec = make_tool({("example.com", "/"): httpx.Response(200, html=HTML)})
    text = tool.invoke("http://example.com/").text
    assert text.splitlines()[0] == "Example Domain"
    assert "This domain is for use in\nexamples\n." in text
    assert "secret" not in text and "color:red" not in text and "enable js" not in text
    request = rec.requests[0]
    assert request.url.host == "93.184.216.34"  # connected to the address that was checked
    assert request.headers["host"] == "example.com"


def test_https_keeps_sni_hostname_and_port_in_host_header():
    tool, rec = make_tool({("docs.example.org:8443", "/a"): httpx.Response(200, text="ok")})
    assert tool.invoke({"url": "https://docs.example.org:8443/a?q=1"}).text == "ok"
    request = rec.requests[0]
    assert request.extensions["sni_hostname"] == "docs.example.org"
    assert str(request.url) == "https://151.101.1.1:8443/a?q=1"  # the IPv4 answer is preferred


def test_json_is_pretty_printed_and_text_as_is():
    tool, _ = make_tool({
        ("example.com", "/api"): httpx.Response(200, json={"b": [1, 2], "a": "é"}),
        ("example.com", "/t.txt"): httpx.Response(200, text="line 1\n  line 2\n"),
    })
    assert tool.invoke("http://example.com/api").text == json.dumps({"b": [1, 2], "a": "é"}, indent=2,
                                                                      ensure_ascii=False)
    assert tool.invoke("http://example.com/t.txt").text == "line 1\n  line 2\n"


def test_body_is_cut_at_max_bytes_with_a_note():
    served = []

    def stream(request):
        def chunks():
            for _ in range(1000):  # 1 MB if read to the end
                served.append(1)
                yield b"a" * 1000

        return httpx.Response(200, headers={"content-type": "text/plain"}, content=chunks())

    tool, _ = make_tool({("example.com", "/big"): stream}, max_bytes=5_000)
    text = tool.invoke("http://example.com/big").text
    assert text.split("\n")[0] == "a" * 5000
    assert text.endswith("[truncated: only the first 5000 bytes were read]")
    assert len(served) < 20  # stopped reading early


def test_max_chars_limits_long_pages():
    tool, _ = make_tool({("example.com", "/"): httpx.Response(200, text="word " * 1000)}, max_chars=100)
    text = tool.invoke("http://example.com/").text
    assert text.startswith("word word") and "first 100 characters" in text and len(text) < 200


def test_redirect_to_loopback_is_refused():
    tool, rec = make_tool({
        ("example.com", "/go"): httpx.Response(302, headers={"location": "http://127.0.0.1/admin"}),
    })
    with pytest.raises(HttpGetRefused, match=r"127\.0\.0\.1 is loopback"):
        tool.invoke("http://example.com/go")
    assert [r.headers["host"] for r in rec.requests] == ["example.com"]  # never contacted 127.0.0.1


@pytest.mark.parametrize("location", [
    "http://localhost:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://rebind.example.net/",
    "http://[::1]/",
    "file:///etc/passwd",
])
def test_every_redirect_hop_is_rechecked(location):
    tool, rec = make_tool({
        ("example.com", "/1"): httpx.Response(301, headers={"location": "http://docs.example.org/2"}),
        ("docs.example.org", "/2"): httpx.Response(307, headers={"location": location}),
    })
    with pytest.raises(HttpGetRefused):
        tool.invoke("http://example.com/1")
    assert len(rec.requests) == 2


def test_relative_redirects_are_followed_and_limited():
    tool, rec = make_tool({
        ("example.com", "/old"): httpx.Response(301, headers={"location": "/new"}),
        ("example.com", "/new"): httpx.Response(200, text="moved here"),
        ("example.com", "/loop"): httpx.Response(302, headers={"location": "/loop"}),
    })
    assert tool.invoke("http://example.com/old").text == "moved here"
    with pytest.raises(ToolExecutionError, match="too many redirects"):
        tool.invoke("http://example.com/loop")
    assert sum(r.url.path == "/loop" for r in rec.requests) == 6  # first request + 5 redirects


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1.2.3:8000/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "not a public address"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata host"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1 is loopback"),
    ("http://v6mapped.example.net/", "127.0.0.1 is loopback"),
    ("http://[fe80::1]/", "link-local"),
    ("http://sneaky.example.net/", "10.0.0.5 is private"),  # ANY private answer refuses
    ("ftp://example.com/file", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://example.com/", "only http and https"),
    ("example.com/no-scheme", "only http and https"),
])
def test_ssrf_targets_are_refused_before_any_request(url, reason):
    tool, rec = make_tool({})
    with pytest.raises(HttpGetRefused, match=reason):
        tool.invoke({"url": url})
    assert rec.requests == []


@pytest.mark.parametrize(("address", "blocked"), [
    ("93.184.216.34", False),
    ("2a04:4e42::1", False),
    ("64:ff9b::7f00:1", True),  # NAT64 form of 127.0.0.1
    ("2002:7f00:1::1", True),  # 6to4 form of 127.0.0.1
    ("2002:5db8:d822::1", False),  # 6to4 form of a public address
    ("::", True),
    ("not-an-ip", True),
])
def test_blocked_reason(address, blocked):
    assert (blocked_reason(address) is not None) == blocked


def test_http_errors_and_binary_content_are_clear():
    tool, _ = make_tool({
        ("example.com", "/img"): httpx.Response(200, headers={"content-type": "image/png"}, content=b"\x89PNG"),
        ("example.com", "/slow"): lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
    })
    with pytest.raises(ToolExecutionError, match=r"HTTP 404 Not Found for http://example.com/missing: not here"):
        tool.invoke("http://example.com/missing")
    with pytest.raises(ToolExecutionError, match="unsupported content type 'image/png'"):
        tool.invoke("http://example.com/img")
    with pytest.raises(ToolExecutionError, match="timed out"):
        tool.invoke("http://example.com/slow")
    with pytest.raises(ToolExecutionError, match="could not resolve"):
        tool.invoke("http://unknown.invalid/")


def test_schema_and_default_instance():
    assert http_get.name == "http_get" and http_get.single_string_input and not http_get.allow_private
    assert http_get.json_schema()["parameters"]["required"] == ["url"]


@pytest.fixture
def loopback_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body><p>hello from loopback</p></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_real_loopback_server_refused_by_default_allowed_when_asked(loopback_server):
    with pytest.raises(HttpGetRefused, match="loopback"):
        HttpGetTool().invoke(loopback_server)
    assert HttpGetTool(allow_private=True, timeout=5).invoke(loopback_server).text == "hello from loopback"
