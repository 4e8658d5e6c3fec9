"""`LoraPublisher`: the policy's LoRA adapter, pushed to vLLM after each iteration, so the
next rollouts run on the served engine with the weights just trained.

vLLM's runtime LoRA API (server started with `--enable-lora` and the environment variable
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`):

- `POST /v1/load_lora_adapter` `{"lora_name": NAME, "lora_path": FOLDER}`: FOLDER is read by
  the server, so it must be a path the server sees (the same disk, or a shared mount);
- `POST /v1/unload_lora_adapter` `{"lora_name": NAME}`;
- a request with `"model": NAME` then samples with that adapter.

Order, per iteration: save the adapter to `FOLDER/adapter-N`, load it as `PREFIX-N` on every
endpoint, point the rollout backend at `PREFIX-N`, and only then unload the previous one, so
no rollout ever names an adapter that is not loaded. A fresh name per iteration (rather than
reloading one name) keeps requests in flight on the old adapter valid. The last adapter stays
loaded when training ends: it is the trained policy, ready to serve.

`ServedPolicy` does the same for `rounds` (collect and evaluate on vLLM, GRPO/SFT/DPO here):
each round's merged policy is factored back into an adapter against the served base.
"""
from __future__ import annotations

from pathlib import Path

import httpx

from rankact.agent.errors import BackendError
from rankact.agent.llm.endpoint_pool import split_endpoints

NOT_ENABLED = ("start vLLM with --enable-lora (and --max-lora-rank >= the adapter's rank) and the environment "
               "variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")


class LoraPublisher:
    """`publish(peft_model, iteration, llm)` (see the module docstring)."""

    def __init__(self, server: str, folder: str | Path, *, prefix: str = "rankact-policy",
                 api_key: str | None = None, timeout: float = 120.0, transport: httpx.BaseTransport | None = None):
        self.endpoints = split_endpoints(server)  # a pool: every endpoint loads every adapter
        if not self.endpoints:
            raise BackendError(f"no server URL in {server!r}")
        self.folder = Path(folder)
        self.prefix = prefix
        self.current: str | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self.client.close()

    def _post(self, endpoint: str, route: str, body: dict) -> httpx.Response:
        url = f"{endpoint}/{route}"
        try:
            response = self.client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach {url}: {exc.__class__.__name__}: {exc}") from exc
        json_reply = response.headers.get("content-type", "").startswith("application/json")
        if response.status_code == 404 and json_reply and response.json().get("detail") == "Not Found":
            # FastAPI's answer for a route it lacks: the server runs without runtime LoRA updating
            raise BackendError(f"{url} does not exist (HTTP 404): {NOT_ENABLED}")
        return response

    def _check(self, response: httpx.Response, body: dict) -> None:
        if response.status_code >= 400:
            detail = " ".join(response.text.split())[:200]
            raise BackendError(f"{response.request.url} refused {body['lora_name']!r} "
                               f"(HTTP {response.status_code}): {detail}")

    def _load(self, endpoint: str, name: str, path: Path) -> None:
        body = {"lora_name": name, "lora_path": str(path)}
        response = self._post(endpoint, "load_lora_adapter", body)
        if response.status_code == 400 and "already been loaded" in response.text:
            # A resumed run publishes an iteration's name again: replace what the server holds.
            self._check(self._post(endpoint, "unload_lora_adapter", {"lora_name": name}), body)
            response = self._post(endpoint, "load_lora_adapter", body)
        self._check(response, body)

    def publish(self, model, iteration: int, llm=None) -> str:
        """Save `model`'s adapter to FOLDER/adapter-N, then `push` it."""
        if not hasattr(model, "peft_config"):
            raise BackendError("a served policy needs LoRA training (--lora): vLLM loads adapters, not whole models")
        path = (self.folder / f"adapter-{iteration}").resolve()
        model.save_pretrained(path)  # the adapter only (adapter_config.json + adapter_model.safetensors)
        return self.push(path, iteration, llm)

    def push(self, adapter: Path, iteration: int, llm=None) -> str:
        """Load the adapter folder on every endpoint as PREFIX-N, point `llm` at it, unload the old one."""
        name = f"{self.prefix}-{iteration}"
        for endpoint in self.endpoints:
            self._load(endpoint, name, Path(adapter).resolve())
        if llm is not None:
            llm.use_model(name)
        previous, self.current = self.current, name
        if previous is not None and previous != name:
            for endpoint in self.endpoints:
                body = {"lora_name": previous}
                self._check(self._post(endpoint, "unload_lora_adapter", body), body)
        return name


class ServedPolicy:
    """Rounds on vLLM: collection and evaluation run on the server, which serves the rounds'
    base; round r's policy (a merged folder) goes there as a LoRA adapter, its difference to
    the base factored by SVD (`adapter_export`, exact at rank >= r x the rounds' LoRA rank)."""

    def __init__(self, server: str, tokenizer, folder: Path, lora_rank: int) -> None:
        from rankact.agent.llm.token_io import ServedTokensLLM

        self.llm = ServedTokensLLM(server, tokenizer, api="vllm")  # token ids, so GRPO trains exactly
        self.base_name = self.llm.http.model
        self.publisher = LoraPublisher(server, folder, prefix="rankact-round")
        self.lora_rank = lora_rank

    def serve(self, base_dir: Path, policy: str, round_index: int):
        """The backend, naming the base (round 0) or round r's policy, pushed first."""
        if round_index == 0:
            self.llm.use_model(self.base_name)
            return self.llm
        from rankact.alignment.training.adapter_export import export_adapter

        adapter = Path(policy).parent / "served-adapter"
        if not (adapter / "adapter_config.json").is_file():
            export_adapter(base_dir, Path(policy), adapter, rank=self.lora_rank * round_index)
        self.publisher.push(adapter, round_index, self.llm)
        return self.llm
