"""What the real llama.cpp server tests share: starting a server on loopback, and token-in/
token-out parity between a trajectory and the server exchanges that produced it (checked on
the real `llama-server` and on its recorded replay, which runs in CI).

An exchange is `[method, path, request body or None, reply JSON]`, as a transport saw it.
"""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rankact.alignment.training.tokenize import encode_trajectory

RECORDED = Path(__file__).parent / "agent" / "recorded" / "llama_server_17x23.json"
QUESTION = "What is 17 * 23?"
MAX_STEPS = 4


@contextlib.contextmanager
def loopback_server(command: list[str], ready_url: str, log: Path, name: str) -> Iterator[int]:
    """Run a server subprocess until `ready_url` answers 200 (fail the test if it exits or
    takes over 180 s); stop it afterwards. `command` may hold "{port}", filled here."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([part.replace("{port}", str(port)) for part in command], stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    ready_url = ready_url.replace("{port}", str(port))
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not start in 180 s")
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


class Recording(httpx.HTTPTransport):
    """Passes requests to the server and keeps every exchange."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[list] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        if response.status_code == 200:
            body = json.loads(request.content) if request.content else None
            self.exchanges.append([request.method, request.url.path, body, response.json()])
        return response


def replay(exchanges: list[list]) -> httpx.MockTransport:
    """Answers the recorded replies in order, failing on any request that differs from the
    recorded one: rankact must send the server exactly the ids it sent when recorded."""
    queue = list(exchanges)

    def handle(request: httpx.Request) -> httpx.Response:
        assert queue, f"unrecorded request {request.method} {request.url.path}"
        method, path, body, reply = queue.pop(0)
        sent = json.loads(request.content) if request.content else None
        assert (request.method, request.url.path) == (method, path)
        assert sent == body, f"request to {path} differs from the recording"
        return httpx.Response(200, json=reply)

    transport = httpx.MockTransport(handle)
    transport.left = queue  # what the run has not asked for yet
    return transport


def assert_turn_parity(trajectory, exchanges: list[list], tokenizer) -> None:
    """Per turn: the server was sent everything before, exactly; the kept ids are what it
    sampled (cut only at a stop string), end-of-turn included; the mask covers exactly the
    generated ids and is never all zero."""
    calls = [(body, reply) for _, path, body, reply in exchanges if path == "/completion"]
    generated = [s for s in trajectory.segments if s.role == "generated"]
    assert trajectory.backend_failure is None, trajectory.backend_failure
    assert trajectory.exact_token_ids
    assert len(calls) == len(generated) >= 1, (len(calls), [s.text for s in generated])
    sequence: list[int] = []
    for segment in trajectory.segments:
        if segment.role == "generated":
            body, reply = calls.pop(0)
            assert body["prompt"] == sequence
            produced = [int(i) for i in reply["tokens"]]
            assert segment.token_ids and segment.token_ids == produced[: len(segment.token_ids)]
            if reply.get("stop_type") == "eos":
                assert segment.token_ids[-1] == produced[-1]  # the end-of-turn token is kept
            assert segment.logprobs and len(segment.logprobs) == len(segment.token_ids)
        sequence += segment.token_ids
    encoded = encode_trajectory(trajectory, tokenizer)
    assert encoded.input_ids == sequence
    generated_ids = sum(len(s.token_ids) for s in generated if not s.forced)
    assert any(encoded.trainable) and sum(encoded.trainable) == generated_ids
