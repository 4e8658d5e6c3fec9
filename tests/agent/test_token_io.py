"""Token-in/token-out from a served model: per turn, the ids a trainer sees are the ids the
server was sent and produced, end-of-turn separators included; masks are never all zero."""
from __future__ import annotations

import pytest
from served_stub import Reply, ServedStub
from transformers import AutoTokenizer

from rankact.agent.errors import BackendError
from rankact.agent.llm.token_io import ServedTokensLLM
from rankact.agent.loop import Agent
from rankact.alignment.training.tokenize import encode_trajectory, require_exact_ids
from rankact.tools import calculator

ACT = Reply(text='Thought: multiply\nAction: calculator\nAction Input: {"expression": "17 * 23"}\nObservation: 7')
ANSWER = Reply(text="Thought: I know it\nFinal Answer: 391", eos=True)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _run(tokenizer, api: str, replies, token_api: str = "auto"):
    stub = ServedStub(replies, api=api, tokenizer=tokenizer)
    with stub as url:
        llm = ServedTokensLLM(url, tokenizer, api=token_api, max_retries=0)
        trajectory = Agent(llm, [calculator]).run("What is 17 * 23?")
    return stub, trajectory


def _prompts(stub, api):
    return [b["prompt"] for b in stub.bodies("/completion" if api == "llamacpp" else "/v1/completions")
            if "return_token_ids" in b or "return_tokens" in b]


@pytest.mark.parametrize("api", ["vllm", "llamacpp"])
def test_each_turn_the_trainer_sees_exactly_the_servers_ids(tokenizer, api):
    stub, trajectory = _run(tokenizer, api, [ACT, ANSWER])
    assert trajectory.status == "finished" and trajectory.final_answer == "391"
    assert trajectory.exact_token_ids is True and trajectory.steps[0].observation == "391"
    prompts = _prompts(stub, api)
    generated = [s for s in trajectory.segments if s.role == "generated"]
    assert len(prompts) == len(generated) == 2
    sequence: list[int] = []
    for segment in trajectory.segments:
        if segment.role == "generated":
            turn = len([s for s in trajectory.segments[: trajectory.segments.index(segment)] if s.role == "generated"])
            assert prompts[turn] == sequence  # the server was sent exactly the sequence so far
            returned = stub.returned[turn]
            assert segment.token_ids == returned[: len(segment.token_ids)]  # a prefix of what it sampled
        sequence += segment.token_ids
    encoded = encode_trajectory(trajectory, tokenizer)
    assert encoded.input_ids == sequence == prompts[-1] + generated[-1].token_ids
    # Trainable are exactly the generated ids (position 0 is never trainable), never all zero.
    assert encoded.n_trainable == sum(len(s.token_ids) for s in generated) > 0
    assert all(s.logprobs is not None and len(s.logprobs) == len(s.token_ids) for s in generated)


@pytest.mark.parametrize("api", ["vllm", "llamacpp"])
def test_the_end_of_turn_token_sits_between_a_reply_and_the_next_observation(tokenizer, api):
    _stub, trajectory = _run(tokenizer, api, [ACT, ANSWER])
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    first, observation = trajectory.segments[1], trajectory.segments[2]
    assert observation.role == "observation"
    # Cut at "Observation:" (vLLM returned those ids too; they are not kept): the template's
    # end of turn opens the observation turn, then the user turn, then the generation prompt.
    assert "Observation" not in tokenizer.decode(first.token_ids)
    assert observation.token_ids[0] == eot
    assert observation.text.startswith("<|im_end|>\n<|im_start|>user\nObservation: 391")
    assert observation.text.endswith("<|im_start|>assistant\n")
    encoded = encode_trajectory(trajectory, tokenizer)
    at = len(trajectory.segments[0].token_ids) + len(first.token_ids)
    assert encoded.input_ids[at] == eot and not encoded.trainable[at]


def test_a_sampled_end_of_turn_is_kept_once_and_trained_on(tokenizer):
    ended = Reply(text='Thought: multiply\nAction: calculator\nAction Input: {"expression": "17 * 23"}', eos=True)
    stub, trajectory = _run(tokenizer, "vllm", [ended, ANSWER])
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    first, observation, last = trajectory.segments[1], trajectory.segments[2], trajectory.segments[3]
    assert first.token_ids[-1] == eot and observation.token_ids[0] != eot  # not repeated
    assert last.token_ids[-1] == eot  # the final reply's end of turn is the model's too
    encoded = encode_trajectory(trajectory, tokenizer)
    assert encoded.trainable[len(trajectory.segments[0].token_ids) + len(first.token_ids) - 1]
    assert encoded.input_ids == _prompts(stub, "vllm")[-1] + last.token_ids


def test_auto_detects_llamacpp_when_v1_completions_returns_no_ids(tokenizer):
    stub = ServedStub([ANSWER], api="llamacpp", tokenizer=tokenizer)
    with stub as url:
        llm = ServedTokensLLM(url, tokenizer, max_retries=0)
        trajectory = Agent(llm, [calculator]).run("q")
    assert llm.api == "llamacpp" and trajectory.final_answer == "391"


def test_a_server_without_ids_is_one_clear_error(tokenizer):
    stub = ServedStub([ANSWER, ANSWER], api="textonly", tokenizer=tokenizer)
    with stub as url:
        llm = ServedTokensLLM(url, tokenizer, max_retries=0)
        with pytest.raises(BackendError, match="returned no token ids: token-in/token-out needs vLLM") as info:
            llm.continue_ids([1, 2, 3], llm_config())
        assert "\n" not in str(info.value)
        trajectory = Agent(llm, [calculator]).run("q")
    assert trajectory.status == "error" and "--tokenizer" in trajectory.metadata["error"]


def llm_config():
    from rankact.agent.llm import GenerationConfig

    return GenerationConfig(max_new_tokens=8)


def test_trainers_refuse_trajectories_without_exact_ids_unless_told(tokenizer, caplog):
    from rankact.agent.trajectory import ModelRef, Segment, Trajectory
    from rankact.alignment.errors import InexactTokenIds

    served = Trajectory(question="q", model=ModelRef(backend="openai", name="m"), prompt_version="native-v1",
                        segments=[Segment(role="prompt", text="p"), Segment(role="generated", text="g")],
                        exact_token_ids=False)
    _, exact = _run(tokenizer, "vllm", [ANSWER])
    require_exact_ids([exact])
    with pytest.raises(InexactTokenIds, match="pass --retokenize"):
        require_exact_ids([exact, served])
    require_exact_ids([served], retokenize=True)
    assert "--retokenize: training on 1 trajectories without exact token ids" in caplog.text


def test_cli_says_in_one_line_before_any_run_that_a_server_returns_no_ids(tokenizer, tiny_model_dir, capsys):
    from rankact.cli.main import main

    stub = ServedStub([ANSWER], api="textonly", tokenizer=tokenizer)
    with stub as url, pytest.raises(SystemExit) as info:
        main(["ask", "What is 2 + 2?", "--model", url, "--tokenizer", str(tiny_model_dir)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error:") and "\n" not in err
    assert "returned no token ids" in err
    # One probe per API, each asking for one token; the agent never ran.
    probes = stub.bodies("/v1/completions")
    assert len(probes) == 1 and probes[0]["max_tokens"] == 1


def test_the_load_probe_picks_the_api_and_the_run_goes_straight_there(tokenizer):
    from rankact.agent.llm.loading import load_llm

    stub = ServedStub([Reply(text="x"), ANSWER], api="llamacpp", tokenizer=tokenizer)
    with stub as url:
        llm = load_llm(url, tokenizer=tokenizer, max_retries=0)
        assert llm.api == "llamacpp"
        trajectory = Agent(llm, [calculator]).run("q")
    assert trajectory.final_answer == "391"
    assert len(stub.bodies("/completion")) == 2  # the probe and the one turn: no second vLLM probe


# ---- red team round 3, N10: ids checked where they enter, NaN log-probs, cut_at, mixed pools ----
@pytest.mark.parametrize("bad", ["oov", "negative", "not_int"])
def test_ids_outside_the_vocabulary_are_a_one_line_backend_error_never_a_trajectory(tokenizer, bad):
    ids = tokenizer.encode("Final Answer: 4", add_special_tokens=False)
    ids += {"oov": [len(tokenizer) + 7], "negative": [-1], "not_int": [2.5]}[bad]
    stub = ServedStub([], tokenizer=tokenizer, default=Reply(ids=ids, eos=True))
    with stub as url:
        llm = ServedTokensLLM(url, tokenizer, api="vllm", max_retries=0)
        with pytest.raises(BackendError, match="outside the tokenizer's vocabulary") as info:
            llm.continue_ids([1, 2, 3], llm_config())
        trajectory = Agent(llm, [calculator]).run("q")
    assert "\n" not in str(info.value)
    assert trajectory.status == "error" and trajectory.backend_failure is not None
    assert all(0 <= i < len(tokenizer) for s in trajectory.segments for i in s.token_ids or ())


def test_nan_log_probs_are_dropped_and_the_run_is_stored(tokenizer, tmp_path):
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    stub = ServedStub([], tokenizer=tokenizer, default=Reply(text="Thought: easy\nFinal Answer: 4", eos=True))
    stub.default.logprob = float("nan")
    with stub as url:
        llm = ServedTokensLLM(url, tokenizer, api="vllm", max_retries=0)
        trajectory = Agent(llm, [calculator]).run("q")
    assert trajectory.status == "finished" and trajectory.final_answer == "4"
    generated = [s for s in trajectory.segments if s.role == "generated"]
    assert generated[0].token_ids and generated[0].logprobs is None  # ids kept, log-probs dropped
    with TrajectoryStore(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        store.add(trajectory)
        assert store.get(trajectory.id).segments == trajectory.segments


@pytest.mark.parametrize("order", ["ids_first", "text_first"])
def test_a_pool_where_one_endpoint_returns_no_ids_is_refused_at_load_naming_it(tokenizer, order):
    from rankact.agent.errors import ModelLoadError
    from rankact.agent.llm.loading import load_llm

    with ServedStub([], tokenizer=tokenizer) as ids_url, ServedStub([], api="textonly", tokenizer=tokenizer) as text_url:
        urls = [ids_url, text_url] if order == "ids_first" else [text_url, ids_url]
        with pytest.raises(ModelLoadError, match="returned no token ids") as info:
            load_llm(",".join(urls), tokenizer=tokenizer, token_api="vllm", max_retries=0)
    message = str(info.value)
    assert message.count(text_url) == 1 and ids_url not in message and "\n" not in message


def test_a_reply_without_ids_in_a_pool_is_sent_to_another_endpoint(tokenizer):
    answer = Reply(text="Thought: easy\nFinal Answer: 4", eos=True)
    with (ServedStub([], tokenizer=tokenizer, default=answer) as ids_url,
          ServedStub([], api="textonly", tokenizer=tokenizer, default=answer) as text_url):
        # Built without the load probe: an endpoint that loses its ids after start-up.
        llm = ServedTokensLLM(f"{text_url},{ids_url}", tokenizer, api="vllm", max_retries=0)
        trajectories = [Agent(llm, [calculator]).run("q") for _ in range(3)]
    assert [t.final_answer for t in trajectories] == ["4"] * 3
    assert all(t.exact_token_ids for t in trajectories)


def _old_cut_at(tokenizer, ids, text, k):
    from rankact.agent.llm.chat_tokens import decode

    for m in range(len(ids), -1, -1):
        piece = decode(tokenizer, ids[:m])
        if len(piece) <= k and text.startswith(piece):
            return m, piece
    return 0, ""


@pytest.mark.parametrize("text", [
    "Thought: hm\nAction: calculator\nAction Input: 1+1\nObservation: 2" + " hello" * 300,
    "Thought: ünïcödé 日本語のテキスト 🙂🙂\nObservation: x" + " 漢字🙂" * 200,
])
def test_cut_at_keeps_the_same_ids_without_decoding_every_prefix(tokenizer, text):
    from rankact.agent.llm.chat_tokens import cut_at, decode, find_stop

    class Counting:  # the tokenizer, counting decodes
        calls = 0

        def decode(self, ids, **kw):
            Counting.calls += 1
            return tokenizer.decode(ids, **kw)

    ids = tokenizer.encode(text, add_special_tokens=False)
    whole = decode(tokenizer, ids)
    k = find_stop(whole, ["Observation:"])[0]
    assert cut_at(Counting(), ids, whole, k) == _old_cut_at(tokenizer, ids, whole, k)
    # The old walk decoded every prefix from the end (hundreds here); bisection needs ~log2(n) + slack.
    assert Counting.calls <= 2 * len(ids).bit_length() + 12 < len(ids) // 4


def test_the_store_refuses_ids_no_tokenizer_has(tmp_path):
    from rankact.agent.trajectory import MAX_TOKEN_IDS, ModelRef, Segment, Trajectory
    from rankact.alignment.errors import StoreError
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    with TrajectoryStore(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        for bad in (-1, MAX_TOKEN_IDS):
            t = Trajectory(question="q", model=ModelRef(backend="openai-tokens", name="m"), prompt_version="v",
                           segments=[Segment(role="generated", text="g", token_ids=[5, bad])])
            with pytest.raises(StoreError, match=f"holds {bad}, outside the vocabulary"):
                store.add(t)
        assert store.count_trajectories() == 0


def test_the_trainer_refuses_ids_outside_its_tokenizer_in_one_line(tokenizer):
    from rankact.agent.trajectory import ModelRef, Segment, Trajectory
    from rankact.alignment.errors import InexactTokenIds

    t = Trajectory(question="q", model=ModelRef(backend="openai-tokens", name="m"), prompt_version="v",
                   segments=[Segment(role="prompt", text="p", token_ids=[1]),
                             Segment(role="generated", text="g", token_ids=[5, len(tokenizer) + 1000])])
    with pytest.raises(InexactTokenIds, match=f"holds {len(tokenizer) + 1000}, outside the vocabulary") as info:
        encode_trajectory(t, tokenizer)
    assert "\n" not in str(info.value)
