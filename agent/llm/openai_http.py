"""OpenAI-compatible chat completions over HTTP (vLLM, llama.cpp server, Ollama, ...).

`transport` is the httpx seam: tests pass `httpx.MockTransport`. Retries with
exponential backoff cover what a retry can fix (429, 5xx, connection errors, timeouts;
`Retry-After` honoured); other 4xx answers fail at once with a message saying what to check.
Stop strings are sent to the server and also applied client-side, since some servers
return the text up to and including the stop string.

Native tool calling: `generate(..., tools=)` sends the tools' JSON Schemas and returns the
calls the model asked for in `Completion.tool_calls`; with `streaming=True` the reply comes
over SSE and the streamed call deltas are assembled (`rankact.agent.llm.tool_calls`). Every
OpenAI-compatible server is taken to accept `tools` (`native_tools = True`); one that rejects
them fails with a message that says how to run the agent in the text ReAct format instead.

What a server sends is bounded: every request has a whole-request `deadline` (httpx's
`timeout` is per read, so a server trickling its reply would hold a call for ever;
`rankact.tools.deadline_transport`), and a reply over `max_reply_bytes` is refused. Requests
always go through an `EndpointPool` (of one endpoint for a single URL), which benches an
endpoint that stalls, breaks off or overflows; a reply that arrives but makes no sense
(`MalformedReply` from a reader passed to `_call`) benches its endpoint too, and in a pool of
several the request is sent to another endpoint.
"""
from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator, Sequence

import httpx

from rankact.agent.errors import BackendError, ServerUnreachable
from rankact.agent.llm.base import ChatMessage, Completion, GenerationConfig, ModelInfo, as_messages
from rankact.agent.llm.endpoint_pool import EndpointPool, EndpointsFailed, ReplyTooLarge, split_endpoints
from rankact.agent.llm.scripted import cut_at_stop
from rankact.agent.llm.stops import holdback_start
from rankact.agent.llm.tool_calls import ToolCallDeltas, parse_tool_calls
from rankact.tools.deadline_transport import DeadlineTransport

NO_TOOLS_HINT = ("the server may not support tool calls (llama.cpp needs --jinja, vLLM --enable-auto-tool-choice "
                 "and a --tool-call-parser); or run the agent with --format react")

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 60.0
# One request, from sending it to the last byte of the reply (a long generation on a CPU
# server fits; a trickling one does not hold the agent past it).
DEFAULT_DEADLINE = 180.0
# A reply body; the longest completions with per-token log-probs are a few MB.
DEFAULT_MAX_REPLY_BYTES = 16 << 20


class MalformedReply(BackendError):
    """A reply that arrived but makes no sense (raised by the readers given to `_call`);
    `error` is the `BackendError` kind to raise when no other endpoint can be tried."""

    def __init__(self, message: str, error: type[BackendError] = BackendError) -> None:
        super().__init__(message)
        self.error = error


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message, if it sent one."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        text = str(msg if msg else body)
    except (ValueError, UnicodeDecodeError):
        text = response.text
    text = " ".join(text.split())
    return text[:200] if text else response.reason_phrase


def _retry_after(response: httpx.Response | None) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


class OpenAICompatibleLLM:
    native_tools = True  # declared: OpenAI-compatible chat servers take `tools` (see NO_TOOLS_HINT)

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        streaming: bool = False,
        max_in_flight: int | None = None,
        deadline: float = DEFAULT_DEADLINE,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ):
        endpoints = split_endpoints(base_url)
        if not endpoints:
            raise BackendError(f"no endpoint URL in {base_url!r}")
        if not deadline > 0 or max_reply_bytes < 1:
            raise BackendError("deadline must be > 0 seconds and max_reply_bytes >= 1")
        # The pool sits in the transport: 8 requests at once per endpoint in a pool of several,
        # no limit for one URL unless asked; under it, each request's deadline.
        self.pool = EndpointPool(endpoints, max_in_flight=max_in_flight or (8 if len(endpoints) > 1 else None),
                                 transport=transport or DeadlineTransport(per_request=deadline, trust_env=True),
                                 max_reply_bytes=max_reply_bytes)
        self.base_url = endpoints[0]
        self.streaming = streaming  # tool-calling replies over SSE, deltas assembled
        self.max_retries = max_retries
        self.backoff = backoff
        # identity: the reply cap counts the bytes that are parsed, not a compressed stream.
        headers = {"Accept-Encoding": "identity", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self.client = httpx.Client(timeout=timeout, headers=headers, transport=self.pool)
        self.model = model or self._first_model()
        self.info = ModelInfo(backend="openai", name=self.model, revision=None)

    def close(self) -> None:
        self.client.close()

    def use_model(self, name: str) -> None:
        """Name another model the server holds (e.g. a LoRA adapter just loaded) from now on."""
        self.model = name
        self.info = ModelInfo(backend="openai", name=name, revision=None)

    # ---- HTTP plumbing -------------------------------------------------------------
    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):  # an endpoint outside /v1 (llama.cpp's /completion)
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _raise_for_status(self, response: httpx.Response, url: str) -> None:
        code = response.status_code
        if code < 400:
            return
        detail = _error_detail(response)
        if code in (401, 403):
            raise BackendError(f"authentication failed (HTTP {code}) at {url}: check api_key "
                               f"(or OPENAI_API_KEY / RANKACT_API_KEY); server said: {detail}")
        if code == 404:
            raise BackendError(f"model or endpoint not found (HTTP 404) at {url}: check that the base URL "
                               f"ends in /v1 and the model name ({getattr(self, 'model', None)!r}) is served; "
                               f"server said: {detail}")
        raise BackendError(f"server rejected the request (HTTP {code}) at {url}: {detail}")

    @property
    def several(self) -> bool:
        """More than one endpoint: a bad reply from one is retried on another."""
        return len(self.pool.endpoints) > 1

    def _where(self, path: str) -> str:
        return self._url(path) if not self.several else f"{path} on the pool ({self.pool.describe()})"

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False,
              extensions: dict | None = None) -> httpx.Response:
        """One request with retries; returns a response with a status < 400."""
        url = self._url(path)
        last, answered = "", False
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                request = self.client.build_request(method, url, json=body, extensions=extensions)
                response = self.client.send(request, stream=stream)
                if response.status_code not in RETRY_STATUS:
                    if response.status_code >= 400:
                        if stream:
                            response.read()
                        self._raise_for_status(response, url)
                    return response
                if stream:
                    response.read()
                last = f"HTTP {response.status_code}: {_error_detail(response)}"
                response.close()
            except EndpointsFailed as exc:  # every endpoint of the pool, each failure named
                last, answered = str(exc), answered or exc.answered
            except ReplyTooLarge as exc:
                if not self.several:
                    raise BackendError(f"the server at {url} {exc}") from None
                last, answered = str(exc), True
            except httpx.TimeoutException as exc:
                last = f"timed out ({exc.__class__.__name__}: {exc})"
            except httpx.TransportError as exc:
                last = f"cannot connect ({exc.__class__.__name__}: {exc})"
            if attempt < self.max_retries:
                wait = _retry_after(response)
                if wait is None:
                    wait = self.backoff * 2 ** attempt
                time.sleep(min(wait, MAX_RETRY_AFTER))
        # A server that answered (even 5xx) is there; only silence is an outage.
        kind = BackendError if response is not None or answered else ServerUnreachable
        raise kind(f"request to {self._where(path)} failed after {self.max_retries + 1} attempts: {last}")

    def _call(self, method: str, path: str, body: dict | None, read, extensions: dict | None = None):
        """`read(reply JSON)` of one request: a reply that makes no sense (`MalformedReply`)
        benches its endpoint and, in a pool of several, is sent again to another endpoint."""
        tries = len(self.pool.endpoints) if self.several and extensions is None else 1
        for attempt in range(tries):
            response = self._send(method, path, body, extensions=extensions)
            try:
                result = read(self._json(response))
                self.pool.reply_ok(response)
                return result
            except MalformedReply as exc:
                endpoint = self.pool.bench_reply(response, f"sent a malformed reply ({exc})")
                if attempt == tries - 1:
                    where = self._url(path) if not self.several else f"{endpoint} ({path})"
                    raise exc.error(f"malformed response from {where}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover - the last try returns or raises

    @staticmethod
    def _json(response: httpx.Response) -> dict:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedReply(f"not JSON ({response.text[:100]!r})") from exc
        if not isinstance(data, dict):
            raise MalformedReply("expected a JSON object")
        return data

    def _first_model(self) -> str:
        def read(data: dict) -> str:
            try:
                return str(data["data"][0]["id"])
            except (KeyError, IndexError, TypeError) as exc:
                raise MalformedReply("no model listed; pass the model name explicitly") from exc

        return self._call("GET", "models", None, read)

    def _body(self, messages: Sequence[ChatMessage], config: GenerationConfig, n: int = 1,
              tools: list[dict] | None = None, **extra) -> dict:
        body = {
            "model": self.model,
            "messages": [m.wire() for m in as_messages(messages)],
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            **extra,
        }
        if n != 1:
            body["n"] = n
        if tools:
            body["tools"] = tools
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        return body

    # ---- the LLM protocol ----------------------------------------------------------
    def _complete(self, messages, config: GenerationConfig, n: int, seed: int | None,
                  tools: list[dict] | None = None) -> list[Completion]:
        cfg = config.model_copy(update={"seed": seed})
        start = time.perf_counter()

        def read(data: dict) -> list[Completion]:
            try:
                choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
                usage = data.get("usage") or {}
                out = []
                for choice in choices:
                    content = choice["message"].get("content") or ""
                    if not isinstance(content, str):
                        raise TypeError("content is not a string")
                    text, stop = cut_at_stop(content, config.stop)
                    reason = choice.get("finish_reason")
                    out.append(Completion(
                        text=text, finish_reason="length" if reason == "length" and stop is None else "stop",
                        stop_sequence=stop, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0) // max(1, len(choices)),
                        seconds=time.perf_counter() - start,
                        tool_calls=parse_tool_calls(choice["message"].get("tool_calls")),
                    ))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise MalformedReply(f"{exc.__class__.__name__}: {exc}") from exc
            if not out:
                raise MalformedReply("no choices")
            return out

        return self._call("POST", "chat/completions", self._body(messages, cfg, n, tools), read)

    def generate(self, messages: Sequence[ChatMessage], config: GenerationConfig,
                 tools: list[dict] | None = None) -> Completion:
        """One reply; with `tools` (`rankact.agent.llm.tool_calls.tool_specs`) it may hold tool calls."""
        try:
            if tools and self.streaming:
                return self._stream_complete(messages, config, tools)
            return self._complete(messages, config, 1, config.seed, tools)[0]
        except BackendError as exc:
            if tools and "rejected the request" in str(exc):
                raise BackendError(f"{exc}; {NO_TOOLS_HINT}") from None
            raise

    def sample(self, messages: Sequence[ChatMessage], config: GenerationConfig, n: int) -> list[Completion]:
        """One request with `n`; servers that return fewer choices (llama.cpp, Ollama)
        get follow-up requests, seeded seed + i when a seed is set."""
        out = self._complete(messages, config, n, config.seed)[:n]
        while len(out) < n:
            seed = config.seed + len(out) if config.seed is not None else None
            out.extend(self._complete(messages, config, 1, seed)[: n - len(out)])
        return out

    def _events(self, body: dict) -> Iterator[dict]:
        """The parsed SSE events of one streamed request, up to `[DONE]`."""
        url = self._url("chat/completions")
        response = self._send("POST", "chat/completions", body, stream=True)
        try:
            for line in response.iter_lines():
                line = line.strip()
                if not line.startswith("data:"):
                    continue  # blank keep-alives, comments, `event:` lines
                payload = line[5:].strip()
                if payload == "[DONE]":
                    self.pool.reply_ok(response)
                    return
                try:
                    event = json.loads(payload)
                    if not isinstance(event, dict):
                        raise TypeError("event is not an object")
                except (ValueError, TypeError) as exc:
                    raise BackendError(f"malformed stream event from {url}: {payload[:100]!r}") from exc
                if "error" in event:
                    raise BackendError(f"server error during stream from {url}: {_err_text(event)}")
                yield event
        except httpx.TransportError as exc:
            raise BackendError(f"stream from {url} broke off: {exc.__class__.__name__}: {exc}") from exc
        finally:
            response.close()

    def _delta(self, event: dict) -> tuple[dict, str | None]:
        try:
            choice = event["choices"][0] if event.get("choices") else {}
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise TypeError("delta is not an object")
            return delta, choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"malformed stream event from {self._url('chat/completions')}: "
                               f"{json.dumps(event)[:100]!r}") from exc

    def _stream_complete(self, messages, config: GenerationConfig, tools: list[dict] | None) -> Completion:
        """A whole reply read over SSE: content pieces joined, tool-call deltas assembled."""
        start = time.perf_counter()
        content, calls, reason, usage = "", ToolCallDeltas(), None, {}
        for event in self._events(self._body(messages, config, tools=tools, stream=True)):
            usage = event.get("usage") or usage
            delta, finish = self._delta(event)
            content += delta.get("content") or ""
            reason = finish or reason
            try:
                calls.add(delta.get("tool_calls") or [])
            except (TypeError, ValueError, AttributeError) as exc:
                raise BackendError(f"malformed tool call in stream from {self._url('chat/completions')}: "
                                   f"{exc}") from exc
        try:
            assembled = calls.calls()
        except TypeError as exc:
            raise BackendError(f"malformed tool call in stream from {self._url('chat/completions')}: {exc}") from exc
        text, stop = cut_at_stop(content, config.stop)
        return Completion(text=text, finish_reason="length" if reason == "length" and stop is None else "stop",
                          stop_sequence=stop, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0),
                          seconds=time.perf_counter() - start, tool_calls=assembled)

    def stream(self, messages: Sequence[ChatMessage], config: GenerationConfig) -> Iterator[str]:
        text, emitted = "", 0
        for event in self._events(self._body(messages, config, stream=True)):
            delta, _ = self._delta(event)
            text += delta.get("content") or ""
            cut, stop = cut_at_stop(text, config.stop)
            if stop is not None:
                if len(cut) > emitted:
                    yield cut[emitted:]
                return
            safe = holdback_start(text, config.stop)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        if len(text) > emitted:
            yield text[emitted:]


def _err_text(event: dict) -> str:
    err = event.get("error")
    return str(err.get("message", err) if isinstance(err, dict) else err)[:200]
