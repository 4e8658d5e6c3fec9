"""Red team, issue 15: the reproducers of failures 5, 7 and 8 (http_get overrunning its
timeout, the parser's quadratic keyword search, read_file leaking the root's path), each
as a test that failed before the fix. The index reproducers (failure 9) are in
tests/retrieval/test_redteam_index.py."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from rankact.agent.parser import ParseError, parse_step
from rankact.tools import HttpGetTool, ToolError, ToolExecutionError
from rankact.tools.files import FileAccessRefused, ReadFileTool


# ---- failure 5: http_get's timeout bounds the whole call, headers included ---------------
class DribblingServer:
    """Accepts connections and sends a response's headers one byte every `every` seconds."""

    def __init__(self, every: float = 0.5, *, body: bool = False):
        self.every, self.body = every, body
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="dribbling-server", daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._dribble, args=(conn,), name="dribbling-server", daemon=True).start()

    def _dribble(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000 + b"\r\n\r\n"
        if self.body:  # headers at once, then a body of one byte every `every` seconds
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000\r\n\r\n")
            head = b"b" * 10_000
        with conn:
            for byte in head:
                if self.stop.wait(self.every):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the client hung up: what a bounded client does

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def dribbling_server():
    server = DribblingServer()
    yield server
    server.close()


def _our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name != "dribbling-server"}


@pytest.mark.timeout(30)  # before the fix it hung for minutes
def test_http_get_run_stops_at_its_timeout_while_headers_dribble(dribbling_server):
    before = _our_threads()
    tool = HttpGetTool(allow_private=True, timeout=2)
    start = time.monotonic()
    with pytest.raises(ToolExecutionError, match="timed out"):
        tool.run(dribbling_server.url)
    assert time.monotonic() - start < 2 + 1.0  # before the fix: minutes
    assert _our_threads() <= before  # nothing left running in the background


@pytest.mark.timeout(30)  # before the fix it hung for minutes
def test_http_get_through_invoke_leaves_no_worker_thread_behind(dribbling_server):
    before = _our_threads()
    tool = HttpGetTool(allow_private=True, timeout=1.5)
    start = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        tool.invoke(dribbling_server.url)
    assert time.monotonic() - start < 1.5 + 1.0
    deadline = time.monotonic() + 1.0  # the worker finishes with (not long after) the call
    while _our_threads() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not {t.name for t in _our_threads() - before}


@pytest.mark.timeout(30)  # before the fix it hung for minutes
def test_http_get_run_stops_at_its_timeout_while_the_body_dribbles():
    server = DribblingServer(body=True)
    try:
        start = time.monotonic()
        with pytest.raises(ToolExecutionError, match="timed out"):
            HttpGetTool(allow_private=True, timeout=1.5).run(server.url)
        assert time.monotonic() - start < 1.5 + 1.0
    finally:
        server.close()


# ---- failure 7: the parser's keyword search was quadratic ---------------------------------
# 16,000 `*` took 3.3 s and 32,000 spaces and tabs 10.1 s. Timing at 100k characters is
# bench/parser_speed.py's job; here the inputs must parse to a ParseError, and the keyword
# pattern must be one that cannot rescan a run (it began with `\**[ \t]*` before).
@pytest.mark.parametrize("text", ["*" * 16_000, " \t" * 16_000, "Thought" + " " * 16_000 + "x"])
def test_parser_reproducers_are_plain_parse_errors(text):
    with pytest.raises(ParseError):
        parse_step(text, ["calculator"])


def test_parser_keyword_pattern_starts_at_the_keyword():
    from rankact.agent.parser import _KEYWORD

    assert not _KEYWORD.pattern.startswith("\\*"), "a leading \\** makes every star a new start"


# ---- failure 8: read_file leaked the root's absolute path and raised OSError ---------------
@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "private-root-name"
    folder.mkdir()
    (folder / "ok.txt").write_text("fine", encoding="utf-8")
    os.symlink("loop", folder / "loop")
    os.symlink("b", folder / "a")
    os.symlink("a", folder / "b")
    return folder


@pytest.mark.parametrize("path", ["loop", "a", "loop/x", "a/b/c", "x" * 5000, "d/" * 3000 + "f", "y" * 300])
def test_read_file_os_failures_are_its_own_error_without_the_root(root, path):
    tool = ReadFileTool(root)
    with pytest.raises(FileAccessRefused) as info:
        tool.run(path)
    message = str(info.value)
    assert str(root) not in message and "private-root-name" not in message
    assert len(message) < 400
    with pytest.raises(FileAccessRefused) as via_invoke:  # through the tool machinery: the same error
        tool.invoke({"path": path})
    assert str(root) not in str(via_invoke.value)


def test_read_file_unreadable_file_is_its_own_error(root, monkeypatch):
    import importlib

    files_module = importlib.import_module("rankact.tools.files")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files_module, "open", denied, raising=False)
    with pytest.raises(FileAccessRefused, match="permission denied") as info:
        ReadFileTool(root).run("ok.txt")
    assert str(root) not in str(info.value)


def test_http_get_with_the_deadline_transport_still_follows_real_redirects():
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/start":
                self.send_response(302)
                self.send_header("Location", "/end")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"arrived"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/start"
        assert HttpGetTool(allow_private=True, timeout=5).run(url) == "arrived"
    finally:
        server.shutdown()
        server.server_close()


def test_the_per_request_deadline_bounds_each_request_of_a_long_lived_transport():
    """Round 3, N9: the served-model client reuses one transport; each request gets its own
    deadline, so the first one's deadline does not fail the ones after it."""
    import http.server
    import threading
    import time

    import httpx

    from rankact.tools.deadline_transport import DeadlineTransport

    class Slow(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # headers, then the body one byte every 0.1 s
            body = b"x" * (40 if self.path == "/slow" else 1)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with httpx.Client(transport=DeadlineTransport(per_request=1.0), timeout=5.0) as client:
            start = time.monotonic()
            with pytest.raises(httpx.TimeoutException):
                client.get(f"{base}/slow")  # 4 s of trickle, each read well under the 5 s timeout
            assert time.monotonic() - start < 2.5
            time.sleep(1.2)  # past the first request's deadline: the next one has its own
            assert client.get(f"{base}/fast").content == b"x"
    finally:
        server.shutdown()
        server.server_close()
