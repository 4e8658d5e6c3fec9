"""A tiny OpenAI-compatible server on 127.0.0.1 (stdlib http.server in a thread), used by
the HTTP backend and CLI tests to exercise a real socket, real SSE and real status codes."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-test"
MODEL = "stub-model"
REPLY = "Paris is the capital of France. Observation: ignored"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send_json(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._send_json(401, {"error": {"message": "Incorrect API key provided"}})
            return False
        return True

    def do_GET(self):
        if self.path != "/v1/models":
            return self._send_json(404, {"error": {"message": f"no route {self.path}"}})
        if self._authorized():
            self._send_json(200, {"object": "list", "data": [{"id": MODEL}, {"id": "other"}]})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append(body)
        if self.path != "/v1/chat/completions":
            return self._send_json(404, {"error": {"message": f"no route {self.path}"}})
        if not self._authorized():
            return
        if self.server.outages > 0:  # a server that is down for now (`StubServer(outages=N)`)
            self.server.outages -= 1
            return self._send_json(503, {"error": {"message": "model is overloaded"}})
        if body.get("model") != MODEL:
            return self._send_json(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
        text = REPLY
        for stop in body.get("stop") or []:  # honour stop like vLLM does
            if stop in text:
                text = text[: text.index(stop)]
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            words = text.split(" ")
            for i, word in enumerate(words):
                piece = word if i == len(words) - 1 else word + " "
                event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        n = int(body.get("n") or 1)
        self._send_json(200, {
            "id": "cmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"} for i in range(n)],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7 * n, "total_tokens": 12 + 7 * n},
        })


class StubServer:
    """Context manager: `with StubServer() as url:` gives http://127.0.0.1:PORT/v1. With
    `outages=N` the first N chat completions answer 503 (set `.outages` later for more)."""

    def __init__(self, outages: int = 0) -> None:
        self._outages = outages

    def __enter__(self) -> str:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.requests = []
        self.httpd.outages = self._outages
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests

    @property
    def outages(self) -> int:
        return self.httpd.outages

    @outages.setter
    def outages(self, count: int) -> None:
        self.httpd.outages = count

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
