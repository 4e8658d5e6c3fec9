"""One served model behind several endpoints (`rankact.agent.llm.endpoint_pool`): round-robin spread,
the per-endpoint in-flight limit, a failing endpoint benched while the others finish the run,
one clear error when all fail; token-in/token-out requests spread too."""
from __future__ import annotations

import concurrent.futures
import contextlib
import socket

import pytest
from served_stub import Reply, ServedStub
from transformers import AutoTokenizer

from rankact.agent.errors import BackendError
from rankact.agent.llm import GenerationConfig, load_llm
from rankact.agent.llm.token_io import ServedTokensLLM
from rankact.agent.loop import Agent
from rankact.tools import calculator

CONFIG = GenerationConfig(max_new_tokens=8, temperature=0.0)
ANSWER = Reply(text="Final Answer: done", eos=True)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: a down endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def _stubs(n: int, **kwargs):
    stubs = [ServedStub([], **kwargs) for _ in range(n)]
    with contextlib.ExitStack() as stack:
        yield stubs, [stack.enter_context(stub) for stub in stubs]


def _chats(stub) -> int:
    return len(stub.bodies("/v1/chat/completions"))


def test_requests_go_round_robin_over_the_endpoints():
    with _stubs(3) as (stubs, urls):
        llm = load_llm(",".join(urls), model="served-stub", max_retries=0)
        for _ in range(6):
            assert llm.generate([{"role": "user", "content": "hi"}], CONFIG).text == "Final Answer: done"
    assert [_chats(s) for s in stubs] == [2, 2, 2]


def test_no_endpoint_ever_has_more_than_max_in_flight_requests():
    with _stubs(2, delay=0.15) as (stubs, urls):
        llm = load_llm(",".join(urls), model="served-stub", max_in_flight=2, max_retries=0)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            texts = list(pool.map(lambda _: llm.generate([{"role": "user", "content": "hi"}], CONFIG).text,
                                  range(12)))
        assert llm.pool.in_flight() == [0, 0]  # every slot given back
    assert texts == ["Final Answer: done"] * 12
    assert [s.peak for s in stubs] == [2, 2]  # the limit is reached and never passed
    assert sum(_chats(s) for s in stubs) == 12


def test_a_streamed_reply_holds_its_slot_until_read():
    with _stubs(1) as (_, urls):
        llm = load_llm(urls[0], model="served-stub", max_in_flight=1, max_retries=0)
        pieces = llm.stream([{"role": "user", "content": "hi"}], CONFIG)
        first = next(pieces)
        assert llm.pool.in_flight() == [1]
        assert (first + "".join(pieces)).strip() == "Final Answer: done"
        assert llm.pool.in_flight() == [0]


@pytest.mark.parametrize("broken", ["down", "503"])
def test_a_failing_endpoint_is_benched_and_the_others_finish_the_run(broken):
    with _stubs(2) as (stubs, urls), ServedStub([], fail_status=503) as failing:
        bad = closed_port_url() if broken == "down" else failing
        llm = load_llm(",".join([bad, *urls]), model="served-stub", max_retries=0)
        for _ in range(6):
            assert llm.generate([{"role": "user", "content": "hi"}], CONFIG).text == "Final Answer: done"
    assert [_chats(s) for s in stubs] == [3, 3]
    assert llm.pool.endpoints[0].benched_until > 0  # tried once, then left out for the cooldown


def test_all_endpoints_failing_is_one_error_naming_each():
    down = [closed_port_url(), closed_port_url()]
    with ServedStub([], fail_status=503) as failing:
        llm = load_llm(",".join([*down, failing]), model="served-stub", max_retries=1, backoff=0.01)
        with pytest.raises(BackendError) as info:
            llm.generate([{"role": "user", "content": "hi"}], CONFIG)
    message = str(info.value)
    assert "failed after 2 attempts" in message and "all 3 endpoints failed" in message
    assert all(url in message for url in [*down, failing]) and "HTTP 503" in message and "\n" not in message


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("api", ["vllm", "llamacpp"])
def test_token_in_token_out_turns_spread_over_the_pool_and_stay_exact(tokenizer, api):
    act = Reply(text='Thought: multiply\nAction: calculator\nAction Input: {"expression": "17 * 23"}\n'
                     'Observation: 7')
    answer = Reply(text="Thought: I know it\nFinal Answer: 391", eos=True)
    path = "/completion" if api == "llamacpp" else "/v1/completions"
    first, second = ServedStub([act], api=api, tokenizer=tokenizer), ServedStub([answer], api=api, tokenizer=tokenizer)
    with first as a, second as b:
        llm = ServedTokensLLM(f"{a},{b}", tokenizer, api=api, model="served-stub", max_retries=0)
        trajectory = Agent(llm, [calculator]).run("What is 17 * 23?")
    assert trajectory.status == "finished" and trajectory.final_answer == "391" and trajectory.exact_token_ids
    assert len(first.bodies(path)) == len(second.bodies(path)) == 1  # turn 1 on one endpoint, turn 2 on the other
    generated = [s.token_ids for s in trajectory.segments if s.role == "generated"]
    assert generated[1] == second.returned[0]  # the second turn's ids are the second server's, unchanged
    assert second.bodies(path)[0]["prompt"][: len(first.bodies(path)[0]["prompt"])] == first.bodies(path)[0]["prompt"]


def test_a_pool_entry_that_is_not_a_url_is_refused_at_load():
    from rankact.agent.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="must be an http"):
        load_llm("http://127.0.0.1:1/v1,127.0.0.1:2/v1")
