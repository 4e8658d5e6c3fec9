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
"""
from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator, Sequence

import httpx

from rankact.agent.errors import BackendError, ServerUnreachable
from rankact.agent.llm.base import ChatMessage, Completion, GenerationConfig, ModelInfo, as_messages
from rankact.agent.llm.endpoint_pool import EndpointPool, split_endpoints
from rankact.agent.llm.scripted import cut_at_stop
from rankact.agent.llm.stops import holdback_start
from rankact.agent.llm.tool_calls import ToolCallDeltas, parse_tool_calls

NO_TOOLS_HINT = ("the server may not support tool calls (llama.cpp needs --jinja, vLLM --enable-auto-tool-choice "
                 "and a --tool-call-parser); or run the agent with --format react")

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 60.0


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
    ):
        endpoints = split_endpoints(base_url)
        if not endpoints:
            raise BackendError(f"no endpoint URL in {base_url!r}")
        # One endpoint without a limit talks to it directly; otherwise the pool sits in the transport.
        self.pool = None
        if len(endpoints) > 1 or max_in_flight is not None:
            self.pool = EndpointPool(endpoints, max_in_flight=max_in_flight or 8, transport=transport)
            transport = self.pool
        self.base_url = endpoints[0]
        self.streaming = streaming  # tool-calling replies over SSE, deltas assembled
        self.max_retries = max_retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
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

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False) -> httpx.Response:
        """One request with retries; returns a response with a status < 400."""
        url = self._url(path)
        last = ""
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                request = self.client.build_request(method, url, json=body)
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
            except httpx.TimeoutException as exc:
                last = f"timed out ({exc.__class__.__name__})"
            except httpx.TransportError as exc:
                last = f"cannot connect ({exc.__class__.__name__}: {exc})"
            if attempt < self.max_retries:
                wait = _retry_after(response)
                if wait is None:
                    wait = self.backoff * 2 ** attempt
                time.sleep(min(wait, MAX_RETRY_AFTER))
        where = url if self.pool is None else f"{path} on the pool ({self.pool.describe()})"
        # A server that answered (even 5xx) is there; only silence is an outage.
        kind = BackendError if response is not None else ServerUnreachable
        raise kind(f"request to {where} failed after {self.max_retries + 1} attempts: {last}")

    def _json(self, response: httpx.Response, url: str) -> dict:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackendError(f"malformed response from {url}: not JSON ({response.text[:100]!r})") from exc
        if not isinstance(data, dict):
            raise BackendError(f"malformed response from {url}: expected a JSON object")
        return data

    def _first_model(self) -> str:
        url = self._url("models")
        data = self._json(self._send("GET", "models"), url)
        try:
            return str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"no model listed by {url}; pass the model name explicitly") from exc

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
        url = self._url("chat/completions")
        data = self._json(self._send("POST", "chat/completions", self._body(messages, cfg, n, tools)), url)
        seconds = time.perf_counter() - start
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
                    seconds=seconds, tool_calls=parse_tool_calls(choice["message"].get("tool_calls")),
                ))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise BackendError(f"malformed response from {url}: {exc.__class__.__name__}: {exc}") from exc
        if not out:
            raise BackendError(f"malformed response from {url}: no choices")
        return out

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
