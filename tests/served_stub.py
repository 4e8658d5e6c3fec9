"""A scripted OpenAI-compatible server on 127.0.0.1 for native tool calls and token-in/token-out.

It answers with the replies it is given, in order, the way the real servers shape them:

- `/v1/chat/completions`: `message.tool_calls` (OpenAI format); streamed, each call comes as
  deltas (id and name first, then the arguments in two pieces), as vLLM sends them.
- `/v1/completions` (api="vllm"): `prompt` must be a list of ids; with `return_token_ids` the
  reply has `choices[0].token_ids` and `prompt_token_ids`, log-probs in
  `logprobs.token_logprobs`. Like vLLM, the text is cut at a stop string but the ids keep the
  tokens that formed it. api="textonly" answers without ids (an older vLLM, a hosted API).
- `/completion` (api="llamacpp"): llama.cpp's native endpoint: `tokens` (with
  `return_tokens`), `content`, `stop_type`, `completion_probabilities[i].logprob`; the ids end
  before a stop string.

Scale-out: `delay` holds each POST that long while `in_flight`/`peak` count the requests being
answered at once; `fail_status` answers every POST with that status (an overloaded or broken
endpoint); `misbehave` answers every POST the way a hostile or broken server does: "garbage"
(200 with HTML), "hang_body" (headers, then silence), "trickle" (a real reply, one byte every
50 ms) or "huge" (a 2 MB completion). A `Reply` with `ids` returns exactly those ids (bad ones
included), with `logprob` as every token's log-prob (NaN too). vLLM's dynamic LoRA routes: `/v1/load_lora_adapter` and `/v1/unload_lora_adapter`
take exactly vLLM's fields, and a request whose `model` names neither the served model nor a
loaded adapter gets vLLM's 404, so a test sees a rollout that names an adapter too early.

A completion reply is the text the "model" samples; `eos=True` appends the end-of-turn id, as
a model that ends its turn does. Every request body is kept in `requests`, every id list the
stub returned in `returned`, so tests compare what the trainer sees with what the server did.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "served-stub"


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[dict] = field(default_factory=list)  # [{"id", "name", "arguments"}]
    eos: bool = False
    ids: list[int] | None = None  # returned as they are instead of the text's ids
    logprob: float = -0.5


def call(name: str, arguments: str | dict, id: str) -> dict:
    return {"id": id, "name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, code: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": MODEL}]})
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        stub: ServedStub = self.server.stub
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with stub.lock:
            stub.requests.append((self.path, body))
            stub.in_flight += 1
            stub.peak = max(stub.peak, stub.in_flight)
        try:
            if stub.delay:
                time.sleep(stub.delay)
            self._route(stub, body)
        finally:
            with stub.lock:
                stub.in_flight -= 1

    def _misbehave(self, how: str, body: dict) -> None:
        if how == "garbage":
            page = b"<html>502 Bad Gateway, sent with status 200</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if how == "hang_body":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            time.sleep(30)
            return
        text = "Final Answer: " + ("X" * (2 << 20) if how == "huge" else "done")
        reply = json.dumps({"id": "c", "object": "chat.completion", "model": MODEL,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}]}).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(reply)}\r\n\r\n"
                ).encode()
        if how == "huge":
            self.wfile.write(head + reply)
            return
        try:  # trickle
            for byte in head + reply:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass
        self.close_connection = True

    def _route(self, stub, body):
        if stub.misbehave:
            return self._misbehave(stub.misbehave, body)
        if stub.fail_status:
            return self._json(stub.fail_status, {"error": {"message": "stub endpoint is failing"}})
        if self.path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            return self._lora(stub, body)
        name = body.get("model")
        if name is not None and name != MODEL and name not in stub.adapters:
            return self._json(404, {"object": "error", "message": f"The model `{name}` does not exist.",
                                    "type": "NotFoundError", "code": 404})
        if self.path == "/v1/chat/completions":
            if stub.reject_tools and body.get("tools"):
                return self._json(400, {"error": {"message": "tools param requires --jinja flag"}})
            return self._chat(stub, body)
        if self.path == "/v1/completions" and stub.api in ("vllm", "textonly"):
            return self._completions(stub, body)
        if self.path == "/completion" and stub.api == "llamacpp":
            return self._llamacpp(stub, body)
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _lora(self, stub, body):
        """vLLM's LoadLoRAAdapterRequest {lora_name, lora_path} / UnloadLoRAAdapterRequest {lora_name}."""
        load = self.path == "/v1/load_lora_adapter"
        allowed = {"lora_name", "lora_path"} if load else {"lora_name", "lora_int_id"}
        name = body.get("lora_name")
        if set(body) - allowed or not name or (load and not body.get("lora_path")):
            return self._json(400, {"object": "error", "message": f"bad request {body}", "code": 400})
        if load and name in stub.adapters:
            return self._json(400, {"object": "error", "message": f"The lora adapter '{name}' has already been "
                                    "loaded.", "code": 400})
        if not load and name not in stub.adapters:
            return self._json(404, {"object": "error", "message": f"The lora adapter '{name}' cannot be found.",
                                    "code": 404})
        if load:
            stub.adapters[name] = body["lora_path"]
        else:
            del stub.adapters[name]
        text = f"Success: LoRA adapter '{name}' {'added' if load else 'removed'} successfully.".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    # ---- chat ---------------------------------------------------------------------
    def _chat(self, stub, body):
        reply = stub.next_reply()
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in reply.tool_calls]
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply.text or None}
            if calls:
                message["tool_calls"] = calls
            return self._json(200, {"id": "c", "object": "chat.completion", "model": MODEL,
                                    "choices": [{"index": 0, "message": message,
                                                 "finish_reason": "tool_calls" if calls else "stop"}],
                                    "usage": {"prompt_tokens": 20, "completion_tokens": 5}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        events = [{"role": "assistant", "content": ""}]
        events += [{"content": piece + " "} for piece in reply.text.split(" ") if reply.text]
        for i, c in enumerate(calls):
            args = c["function"]["arguments"]
            half = len(args) // 2
            events.append({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                           "function": {"name": c["function"]["name"], "arguments": ""}}]})
            events.append({"tool_calls": [{"index": i, "function": {"arguments": args[:half]}}]})
            events.append({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
        for n, delta in enumerate(events):
            finish = ("tool_calls" if calls else "stop") if n == len(events) - 1 else None
            event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    # ---- token-in/token-out -----------------------------------------------------------
    def _sampled(self, stub, body, prompt) -> tuple[list[int], str, str]:
        """(ids, text, why it stopped) of the next reply, cut at a stop string."""
        if not (isinstance(prompt, list) and all(isinstance(i, int) for i in prompt)):
            raise ValueError("prompt must be a list of token ids")
        reply = stub.next_reply()
        if reply.ids is not None:
            return list(reply.ids), reply.text, "eos" if reply.eos else "limit"
        text, why = reply.text, "eos" if reply.eos else "limit"
        for stop in body.get("stop") or []:
            if stop in text:
                text, why = text[: text.index(stop) + len(stop)], "word"
        ids = stub.encode(text) + ([stub.eos_id] if reply.eos and why != "word" else [])
        return ids, text, why

    def _completions(self, stub, body):
        ids, text, why = self._sampled(stub, body, body.get("prompt"))
        if why == "word":  # vLLM leaves the stop string out of the text, not out of the ids
            text = text[: -len(next(s for s in body["stop"] if text.endswith(s)))]
        choice = {"index": 0, "text": text, "finish_reason": "stop" if why != "limit" else "length",
                  "logprobs": {"tokens": [f"t{i}" for i in ids], "token_logprobs": [stub.last.logprob] * len(ids)}}
        if stub.api == "vllm" and body.get("return_token_ids"):
            choice["token_ids"], choice["prompt_token_ids"] = ids, body["prompt"]
            stub.returned.append(ids)
        self._json(200, {"id": "t", "object": "text_completion", "model": MODEL, "choices": [choice],
                         "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(ids)}})

    def _llamacpp(self, stub, body):
        ids, text, why = self._sampled(stub, body, body.get("prompt"))
        if why == "word":  # llama.cpp's ids end before the stop word
            text = text[: -len(next(s for s in body["stop"] if text.endswith(s)))]
        ids = stub.encode(text)  # and hold no end-of-generation token
        payload = {"content": text, "stop": True, "stop_type": why, "tokens_predicted": len(ids),
                   "tokens_evaluated": len(body["prompt"]),
                   "completion_probabilities": [{"id": i, "token": f"t{i}", "logprob": -0.25, "bytes": [],
                                                 "top_logprobs": []} for i in ids]}
        if body.get("return_tokens"):
            payload["tokens"] = ids
            stub.returned.append(ids)
        self._json(200, payload)


class ServedStub:
    """`with ServedStub(replies, api=..., tokenizer=...) as url:` gives http://127.0.0.1:PORT/v1."""

    def __init__(self, replies: list[Reply], *, api: str = "vllm", tokenizer=None, reject_tools: bool = False,
                 default: Reply | None = None, delay: float = 0.0, fail_status: int | None = None,
                 misbehave: str | None = None):
        self.replies = list(replies)
        self.default = default or Reply(text="Final Answer: done", eos=True)
        self.api = api
        self.tokenizer = tokenizer
        self.reject_tools = reject_tools
        self.requests: list[tuple[str, dict]] = []
        self.returned: list[list[int]] = []
        self.lock = threading.Lock()
        self.delay, self.fail_status, self.misbehave = delay, fail_status, misbehave
        self.in_flight = self.peak = 0
        self.adapters: dict[str, str] = {}  # loaded LoRA adapters: name -> path

    @property
    def eos_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def next_reply(self) -> Reply:
        with self.lock:
            self.last = self.replies.pop(0) if self.replies else self.default
            return self.last

    def bodies(self, path: str) -> list[dict]:
        return [b for p, b in self.requests if p == path]

    def __enter__(self) -> str:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.stub = self
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
