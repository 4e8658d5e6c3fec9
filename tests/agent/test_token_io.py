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
