"""The OpenAI-compatible backend: every failure path through httpx.MockTransport, and
normal + streamed completions against a real server on loopback."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from openai_stub_server import API_KEY, MODEL, StubServer

from rankact.agent.errors import BackendError
from rankact.agent.llm import LLM, GenerationConfig, as_messages
from rankact.agent.llm.loading import load_llm
from rankact.agent.llm.openai_http import OpenAICompatibleLLM

BASE = "http://llm.test/v1"
Q = as_messages("What is the capital of France?")


def chat_response(*texts, finish="stop"):
    return {
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish}
                    for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3 * len(texts)},
    }


def client(handler, **kw):
    kw.setdefault("backoff", 0.001)
    return OpenAICompatibleLLM(BASE, "m", api_key="k", transport=httpx.MockTransport(handler), **kw)


class Recorder:
    """A MockTransport handler replaying a list of responses/exceptions, recording requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_request_body_headers_and_parsed_completion():
    rec = Recorder(httpx.Response(200, json=chat_response("Paris.")))
    llm = client(rec)
    assert isinstance(llm, LLM) and llm.info.backend == "openai" and llm.info.name == "m"
    c = llm.generate(Q, GenerationConfig(max_new_tokens=9, temperature=0.5, top_p=0.9, seed=4, stop=["\n"]))
    assert c.text == "Paris." and c.finish_reason == "stop" and c.token_ids is None
    assert (c.prompt_tokens, c.completion_tokens) == (5, 3)
    req = rec.requests[0]
    assert req.method == "POST" and str(req.url) == f"{BASE}/chat/completions"
    assert req.headers["authorization"] == "Bearer k"
    body = json.loads(req.content)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "max_tokens": 9, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"], "seed": 4}


def test_stop_is_also_applied_client_side_and_length_is_reported():
    rec = Recorder(httpx.Response(200, json=chat_response("Thought: a\nObservation: b", finish="stop")),
                   httpx.Response(200, json=chat_response("cut short", finish="length")))
    llm = client(rec)
    c = llm.generate(Q, GenerationConfig(stop=["Observation:"]))
    assert c.text == "Thought: a\n" and c.stop_sequence == "Observation:"
    assert llm.generate(Q, GenerationConfig()).finish_reason == "length"


def test_model_none_takes_the_first_listed_model():
    def handler(request):
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "served-a"}, {"id": "served-b"}]})
        return httpx.Response(200, json=chat_response(json.loads(request.content)["model"]))

    llm = OpenAICompatibleLLM(BASE, transport=httpx.MockTransport(handler))
    assert llm.info.name == "served-a" and llm.generate(Q, GenerationConfig()).text == "served-a"


def test_timeout_is_retried_then_succeeds_and_exhausted_timeouts_fail():
    rec = Recorder(httpx.ReadTimeout("slow"), httpx.Response(200, json=chat_response("ok")))
    assert client(rec).generate(Q, GenerationConfig()).text == "ok" and len(rec.requests) == 2
    rec = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(BackendError, match="failed after 3 attempts: timed out"):
        client(rec, max_retries=2).generate(Q, GenerationConfig())
    assert len(rec.requests) == 3


def test_429_then_success_honours_retry_after():
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "0.05"}, json={"error": {"message": "slow down"}}),
                   httpx.Response(200, json=chat_response("ok")))
    start = time.perf_counter()
    c = client(rec, backoff=30.0).generate(Q, GenerationConfig())  # Retry-After wins over the long backoff
    assert c.text == "ok" and len(rec.requests) == 2 and time.perf_counter() - start < 5


def test_500_exhausted_reports_the_last_error():
    rec = Recorder(httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(BackendError, match="after 4 attempts: HTTP 500: CUDA out of memory"):
        client(rec).generate(Q, GenerationConfig())
    assert len(rec.requests) == 4


def test_backoff_grows_exponentially(monkeypatch):
    waits = []
    monkeypatch.setattr("rankact.agent.llm.openai_http.time.sleep", waits.append)
    rec = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(BackendError, match="cannot connect"):
        client(rec, backoff=0.5).generate(Q, GenerationConfig())
    assert waits == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("code,message", [
    (401, "authentication failed .* check api_key"),
    (403, "authentication failed"),
    (404, "model or endpoint not found .* /v1"),
    (400, "server rejected the request \\(HTTP 400\\).*max_tokens too large"),
])
def test_4xx_fails_at_once_with_a_clear_message(code, message):
    rec = Recorder(httpx.Response(code, json={"error": {"message": "max_tokens too large"}}))
    with pytest.raises(BackendError, match=message):
        client(rec).generate(Q, GenerationConfig())
    assert len(rec.requests) == 1


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>gateway</html>"),
    httpx.Response(200, json={"no": "choices"}),
    httpx.Response(200, json={"choices": [{"message": {"content": 3}}]}),
    httpx.Response(200, json=[1, 2]),
])
def test_malformed_json_is_a_backend_error(response):
    with pytest.raises(BackendError, match="malformed response"):
        client(Recorder(response)).generate(Q, GenerationConfig())


def sse(*events, done=True):
    lines = [f"data: {json.dumps(e)}\n\n" for e in events] + (["data: [DONE]\n\n"] if done else [])
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(lines).encode())


def delta(text):
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def test_sse_stream_yields_pieces_and_stops_at_done():
    rec = Recorder(sse({"choices": [{"delta": {"role": "assistant"}}]}, delta("Par"), delta("is."), delta("")))
    assert list(client(rec).stream(Q, GenerationConfig())) == ["Par", "is."]
    assert json.loads(rec.requests[0].content)["stream"] is True


def test_sse_stream_holds_back_a_possible_stop_and_cuts_at_it():
    rec = Recorder(sse(delta("Thought: a\nObs"), delta("ervation: leak"), delta("more")))
    pieces = list(client(rec).stream(Q, GenerationConfig(stop=["Observation:"])))
    assert "".join(pieces) == "Thought: a\n" and "Obs" not in "".join(pieces)


def test_sse_errors_are_backend_errors():
    with pytest.raises(BackendError, match="malformed stream event"):
        list(client(Recorder(sse(delta("a"), {"choices": "bad"}))).stream(Q, GenerationConfig()))
    with pytest.raises(BackendError, match="authentication failed"):
        list(client(Recorder(httpx.Response(401, json={"error": "bad key"}))).stream(Q, GenerationConfig()))


def test_sample_uses_n_and_tops_up_servers_that_ignore_it():
    rec = Recorder(httpx.Response(200, json=chat_response("a")), httpx.Response(200, json=chat_response("b")),
                   httpx.Response(200, json=chat_response("c")))
    out = client(rec).sample(Q, GenerationConfig(temperature=1.0, seed=10), 3)
    assert [c.text for c in out] == ["a", "b", "c"]
    bodies = [json.loads(r.content) for r in rec.requests]
    assert bodies[0]["n"] == 3 and [b.get("seed") for b in bodies] == [10, 11, 12]


# ---- a real server on loopback ----------------------------------------------------------

def test_real_server_completion_and_stream():
    with StubServer() as url:
        llm = load_llm(url, api_key=API_KEY)
        assert llm.info.name == MODEL
        c = llm.generate(Q, GenerationConfig(stop=[" Observation:"]))
        assert c.text == "Paris is the capital of France." and c.prompt_tokens == 12
        pieces = list(llm.stream(Q, GenerationConfig(stop=[" Observation:"])))
        assert len(pieces) > 3 and "".join(pieces) == c.text
        assert [x.text for x in llm.sample(Q, GenerationConfig(stop=[" Observation:"]), 2)] == [c.text, c.text]


def test_real_server_auth_and_unknown_model_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RANKACT_API_KEY", raising=False)
    with StubServer() as url:
        with pytest.raises(BackendError, match="authentication failed .*401"):
            load_llm(url, api_key="wrong")
        monkeypatch.setenv("RANKACT_API_KEY", API_KEY)  # the key may come from the environment
        llm = load_llm(url, model="no-such-model")
        with pytest.raises(BackendError, match="model or endpoint not found"):
            llm.generate(Q, GenerationConfig())


# ---- red team round 3, N9: replies judged after their headers (no real sockets) ----------
class _StallingBody(httpx.SyncByteStream):
    """A reply whose body stops after a few bytes: the read times out, as a hung server's does."""

    def __iter__(self):
        yield b'{"choi'
        raise httpx.ReadTimeout("timed out reading the body")


class _Chunks(httpx.SyncByteStream):
    """A body sent in 1 KB pieces, as a socket delivers it (bytes content is read at once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        for start in range(0, len(self.data), 1024):
            yield self.data[start:start + 1024]


def _two_endpoints(bad, **options):
    """A pool of two endpoints on one MockTransport: llm-a answers with `bad()`, llm-b well."""
    seen = {"llm-a.test": 0, "llm-b.test": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] += 1
        if request.url.host == "llm-a.test":
            return bad()
        return httpx.Response(200, json=chat_response("Paris."))

    llm = OpenAICompatibleLLM("http://llm-a.test/v1,http://llm-b.test/v1", "m", transport=httpx.MockTransport(handler),
                              backoff=0.001, max_retries=1, **options)
    return llm, seen


@pytest.mark.parametrize(("bad", "options"), [
    (lambda: httpx.Response(200, stream=_StallingBody()), {}),  # headers, then the body stalls
    (lambda: httpx.Response(200, text="<html>a proxy's error page, with status 200</html>"), {}),
    (lambda: httpx.Response(200, json={"choices": "nope"}), {}),  # JSON of another shape
    (lambda: httpx.Response(200, stream=_Chunks(json.dumps(chat_response("x" * 10_000)).encode())),
     {"max_reply_bytes": 4096}),
], ids=["stalled", "html", "wrong-shape", "too-large"])
def test_a_bad_reply_benches_its_endpoint_and_the_call_goes_to_the_other(bad, options):
    llm, seen = _two_endpoints(bad, **options)
    texts = [llm.generate(Q, GenerationConfig(max_new_tokens=4)).text for _ in range(4)]
    assert texts == ["Paris."] * 4
    assert seen["llm-a.test"] == 1 and seen["llm-b.test"] == 4  # tried once, then benched
    assert llm.pool.endpoints[0].benched_until > time.monotonic()


def test_a_malformed_reply_names_the_endpoint_that_sent_it():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>garbage</html>")

    llm = OpenAICompatibleLLM("http://llm-a.test/v1,http://llm-b.test/v1", "m", transport=httpx.MockTransport(handler),
                              backoff=0.001, max_retries=0)
    llm.pool._next = 1  # the first call goes to the second endpoint
    with pytest.raises(BackendError, match=r"malformed response from http://llm-a.test/v1 \(chat/completions\)"):
        llm.generate(Q, GenerationConfig(max_new_tokens=4))  # b, then a: the last one is named
    assert all(e.last_error.startswith("sent a malformed reply") for e in llm.pool.endpoints)
