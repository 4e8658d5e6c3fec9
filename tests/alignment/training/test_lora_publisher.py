"""PPO with a served policy: after each iteration the LoRA adapter is saved and pushed to vLLM's
runtime LoRA API, and the next rollouts name it. The stub checks vLLM's exact request bodies
and answers 404 to a request naming an adapter it has not loaded, as vLLM does."""
from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from served_stub import ServedStub

from rankact.agent.errors import BackendError
from rankact.agent.llm import GenerationConfig
from rankact.agent.loop import Agent
from rankact.alignment.tasks import Task
from rankact.alignment.training.lora_publisher import LoraPublisher
from rankact.alignment.training.policy import LoraSettings
from rankact.alignment.training.ppo.config import PPOConfig
from rankact.alignment.training.ppo.trainer import train_ppo
from rankact.tools import calculator

LOAD, UNLOAD, COMPLETIONS = "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/v1/completions"


def _events(stub) -> list[tuple[str, str]]:
    """What the server was asked, in order: (load|unload|rollout, adapter name)."""
    kinds = {LOAD: "load", UNLOAD: "unload", COMPLETIONS: "rollout"}
    return [(kinds[path], body.get("lora_name") or body.get("model")) for path, body in stub.requests
            if path in kinds]


@pytest.mark.parametrize("endpoints", [1, 2])
def test_ppo_pushes_each_iterations_adapter_before_the_rollouts_that_name_it(tmp_path, tiny_model_dir, endpoints):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stubs = [ServedStub([], api="vllm", tokenizer=tokenizer) for _ in range(endpoints)]

    def agent_factory(llm):
        return Agent(llm, [calculator], max_steps=1, max_parse_errors=1, guided=False,
                     generation=GenerationConfig(max_new_tokens=6, stop=["Observation:"]))

    out = tmp_path / "ppo"
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(stub) for stub in stubs]
        config = PPOConfig(out_dir=out, base=str(tiny_model_dir), iterations=2, tasks_per_iteration=1, samples=2,
                           minibatch_size=2, ppo_epochs=1, learning_rate=1e-2, max_length=128,
                           lora=LoraSettings(r=4, alpha=8), show_progress=False, served_policy=",".join(urls))
        result = train_ppo(config, reward_fn=lambda t: float(len(t.transcript()) % 3),
                           tasks=[Task(question="What is 2 + 3?", answers=["5"])], agent_factory=agent_factory)
    assert result.steps == 2
    adapters = out / "served-adapters"
    for stub in stubs:
        # The exact bodies vLLM's LoadLoRAAdapterRequest / UnloadLoRAAdapterRequest take.
        assert stub.bodies(LOAD) == [
            {"lora_name": "rankact-policy-0", "lora_path": str((adapters / "adapter-0").resolve())},
            {"lora_name": "rankact-policy-1", "lora_path": str((adapters / "adapter-1").resolve())}]
        assert stub.bodies(UNLOAD) == [{"lora_name": "rankact-policy-0"}]
        assert stub.adapters == {"rankact-policy-1": str((adapters / "adapter-1").resolve())}  # the trained one stays
    events = _events(stubs[0])
    rollouts = [name for stub in stubs for kind, name in _events(stub) if kind == "rollout"]
    assert sorted(rollouts) == ["rankact-policy-0"] * 2 + ["rankact-policy-1"] * 2  # every rollout named an adapter
    if endpoints == 1:  # load new, then rollouts name it, then the old one goes
        assert events == [("load", "rankact-policy-0"), ("rollout", "rankact-policy-0"),
                          ("rollout", "rankact-policy-0"), ("load", "rankact-policy-1"),
                          ("unload", "rankact-policy-0"), ("rollout", "rankact-policy-1"),
                          ("rollout", "rankact-policy-1")]
    else:  # the pool spread the rollouts over both endpoints, each of which holds the adapter
        assert all(any(k == "rollout" for k, _ in _events(s)) for s in stubs)
    for i in (0, 1):
        assert json.loads((adapters / f"adapter-{i}" / "adapter_config.json").read_text())["r"] == 4
    # The second adapter is the trained one, not a copy of the first.
    assert ((adapters / "adapter-0" / "adapter_model.safetensors").read_bytes()
            != (adapters / "adapter-1" / "adapter_model.safetensors").read_bytes())


def test_served_policy_without_lora_is_refused_before_anything_loads(tmp_path, tiny_model_dir):
    from rankact.agent.errors import RankactError

    config = PPOConfig(out_dir=tmp_path, base=str(tiny_model_dir), served_policy="http://127.0.0.1:9/v1")
    with pytest.raises(RankactError, match="needs --lora"):
        train_ppo(config, reward_fn=lambda t: 0.0, tasks=[Task(question="q")])


class _Peft:
    """Stands for a PEFT model: has `peft_config`, saves its adapter to a folder."""

    peft_config = "lora"

    def save_pretrained(self, path):
        path.mkdir(parents=True)


def test_a_server_without_runtime_lora_updating_says_how_to_enable_it(tmp_path):
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "Not Found"}))
    publisher = LoraPublisher("http://vllm:8000/v1", tmp_path, transport=transport)
    with pytest.raises(BackendError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True") as info:
        publisher.publish(_Peft(), 0)
    assert "\n" not in str(info.value)


def test_a_resumed_run_replaces_an_adapter_name_the_server_still_holds(tmp_path):
    stub = ServedStub([])
    with stub as url:
        LoraPublisher(url, tmp_path / "a").publish(_Peft(), 3)
        again = LoraPublisher(url, tmp_path / "b")  # a new process, same iteration
        assert again.publish(_Peft(), 3) == "rankact-policy-3"
    assert stub.adapters == {"rankact-policy-3": str((tmp_path / "b" / "adapter-3").resolve())}
    assert [path for path, _ in stub.requests] == [LOAD, LOAD, UNLOAD, LOAD]
