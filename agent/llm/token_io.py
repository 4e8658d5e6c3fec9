"""Token-in/token-out from a served model: `ServedTokensLLM`.

When the served model's tokenizer is known (`--tokenizer`: a model folder, "default" for the
embedded model, or a hub name already in the local cache), rankact renders the chat template
itself and sends token ids to the server's completions endpoint, getting token ids and
log-probs back. The agent then runs as one growing token sequence (`rankact.agent.token_decoder`),
so a served trajectory trains exactly like a guided local one.

Two server APIs return ids (`api`, or "auto" to probe on the first call):

- "vllm": `POST /v1/completions` with `prompt` as a list of ids and `return_token_ids: true`
  (vLLM >= 0.10.2); the ids come back in `choices[0].token_ids`, log-probs in
  `choices[0].logprobs.token_logprobs` (`logprobs: 1`).
- "llamacpp": llama.cpp's native `POST /completion` (beside `/v1`) with `prompt` as a list of
  ids, `return_tokens: true` and `n_probs: 1`; ids in `tokens`, log-probs in
  `completion_probabilities[i].logprob`.

A server that returns no ids is a one-line `BackendError`, never a silent fallback to text.
The stop-string rule is the local engines' (`chat_tokens.cut_at`): the kept ids are the
longest prefix of what the server returned whose text ends before the stop string, so the ids
are always a prefix of what was sampled, whether or not the server already cut them. An
end-of-turn token the model sampled stays in `token_ids` (it is the model's choice) and
leaves the text.

What the server returns is checked where it enters: every id must be an integer in the
tokenizer's vocabulary, else the reply is malformed (its endpoint is benched; one line, never
a tokenizer traceback, and never stored to crash a trainer later). Log-probs that are not
finite numbers are dropped (the ids stay; log-probs are optional). In a pool every endpoint
must return ids: `check_token_ids` probes each one, and a reply without ids later is a bad
reply from the endpoint that sent it.
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from rankact.agent.errors import BackendError, ModelLoadError, ServerUnreachable, TokenIdsUnsupported
from rankact.agent.llm.base import Completion, GenerationConfig, ModelInfo
from rankact.agent.llm.chat_tokens import ChatTokenizer, cut_at, decode, eos_ids, find_stop
from rankact.agent.llm.endpoint_pool import PIN, pinned
from rankact.agent.llm.openai_http import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_REPLY_BYTES,
    MalformedReply,
    OpenAICompatibleLLM,
)
from rankact.agent.trajectory import MAX_TOKEN_IDS

log = logging.getLogger(__name__)

APIS = ("auto", "vllm", "llamacpp")
NO_IDS = ("returned no token ids: token-in/token-out needs vLLM >= 0.10.2 (/v1/completions with "
          "return_token_ids) or llama.cpp's /completion (return_tokens); drop --tokenizer to run on chat text")


def load_tokenizer(spec: str | Path):
    """A Hugging Face tokenizer from "default" (the embedded model), a folder or a cached hub
    name; never downloads."""
    from transformers import AutoTokenizer

    if str(spec) in ("default", "base"):  # the adapter changes weights, never the tokenizer
        from rankact.agent.llm.model_files import base_model_dir

        spec = base_model_dir()
    elif ("/" in str(spec) or str(spec).startswith(".")) and not Path(spec).expanduser().exists():
        raise ModelLoadError(f"tokenizer folder not found: {spec} (a model folder, 'default', or a cached hub name)")
    try:
        return AutoTokenizer.from_pretrained(str(spec), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - missing folder, no tokenizer files, not cached
        detail = " ".join(str(exc).split())[:160] or exc.__class__.__name__
        raise ModelLoadError(f"cannot load tokenizer {str(spec)!r} (a model folder, 'default', or a hub name "
                             f"already downloaded; nothing is fetched): {detail}") from None


class ServedTokensLLM(ChatTokenizer):
    """An OpenAI-compatible server driven with token ids (see the module docstring)."""

    token_in_token_out = True  # the agent runs on one token sequence (agent.token_decoder)
    native_tools = False  # tool calls would need the server's parser; the agent uses ReAct text

    def __init__(self, base_url: str, tokenizer, *, api: str = "auto", model: str | None = None,
                 api_key: str | None = None, timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None, concurrency: int = 8,
                 max_in_flight: int | None = None, deadline: float = DEFAULT_DEADLINE,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        if api not in APIS:
            raise ModelLoadError(f"unknown token API {api!r}; use one of {', '.join(APIS)}")
        self.tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str | Path) else tokenizer
        self.http = OpenAICompatibleLLM(base_url, model, api_key=api_key, timeout=timeout, max_retries=max_retries,
                                        backoff=backoff, transport=transport, max_in_flight=max_in_flight,
                                        deadline=deadline, max_reply_bytes=max_reply_bytes)
        self.api = api
        # A pool takes max_in_flight requests on each endpoint: fill them all.
        pool = self.http.pool
        self.concurrency = concurrency if pool.max_in_flight is None else pool.max_in_flight * len(pool.endpoints)
        # ids a reply may hold: [0, vocab_size)
        self.vocab_size = len(self.tokenizer) if hasattr(self.tokenizer, "__len__") else MAX_TOKEN_IDS
        self.eos = eos_ids(self.tokenizer)
        self.info = ModelInfo(backend="openai-tokens", name=self.http.model, revision=None)

    @property
    def root(self) -> str:
        """The server root (llama.cpp's native endpoints live beside /v1)."""
        base = self.http.base_url
        return base.removesuffix("/v1")

    def close(self) -> None:
        self.http.close()

    def use_model(self, name: str) -> None:
        """Name another model the server holds (e.g. a LoRA adapter just loaded) from now on."""
        self.http.use_model(name)
        self.info = ModelInfo(backend="openai-tokens", name=name, revision=None)

    # ---- the two APIs ----------------------------------------------------------------
    def _ids(self, out, need: bool) -> list[int] | None:
        """The reply's ids, each checked against the vocabulary; None when it has none and
        `need` is False (the API is still being probed)."""
        if out is None:
            if need:
                raise MalformedReply(NO_IDS, TokenIdsUnsupported)
            return None
        if not isinstance(out, list):
            raise MalformedReply("token ids are not a list")
        bad = next((i for i in out if isinstance(i, bool) or not isinstance(i, int)
                    or not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise MalformedReply(f"token id {bad!r} is outside the tokenizer's vocabulary [0, {self.vocab_size}): "
                                 "the server's model and --tokenizer must match")
        return list(out)

    @staticmethod
    def _logprobs(values) -> list[float] | None:
        """Finite log-probs, or None: a NaN or infinite one (a server bug) drops them all."""
        if not values:
            return None
        try:
            floats = [float(x) for x in values]
        except (TypeError, ValueError):
            floats = []
        if len(floats) != len(values) or not all(math.isfinite(x) for x in floats):
            log.warning("the server returned log-probs that are not finite numbers; they are dropped")
            return None
        return floats

    def _vllm(self, ids: list[int], config: GenerationConfig, need: bool = True,
              extensions: dict | None = None) -> tuple[list[int] | None, list[float] | None, dict]:
        body = {"model": self.http.model, "prompt": ids, "max_tokens": config.max_new_tokens,
                "temperature": config.temperature, "top_p": config.top_p, "return_token_ids": True,
                "logprobs": 1, "skip_special_tokens": False}
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed

        def read(data: dict):
            try:
                choice = data["choices"][0]
                logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
                return (self._ids(choice.get("token_ids"), need), self._logprobs(logprobs),
                        data.get("usage") or {})
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise MalformedReply(f"{exc.__class__.__name__}: {exc}") from exc

        return self.http._call("POST", "completions", body, read, extensions)

    def _llamacpp(self, ids: list[int], config: GenerationConfig, need: bool = True,
                  extensions: dict | None = None) -> tuple[list[int] | None, list[float] | None, dict]:
        body = {"prompt": ids, "n_predict": config.max_new_tokens, "temperature": config.temperature,
                "top_p": config.top_p, "return_tokens": True, "n_probs": 1, "cache_prompt": True}
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed

        def read(data: dict):
            try:
                probs = data.get("completion_probabilities") or []
                logprobs = [p["logprob"] for p in probs] if probs and all("logprob" in p for p in probs) else None
                usage = {"prompt_tokens": data.get("tokens_evaluated") or 0,
                         "completion_tokens": data.get("tokens_predicted") or 0}
                return self._ids(data.get("tokens") or None, need), self._logprobs(logprobs), usage
            except (TypeError, KeyError, AttributeError) as exc:
                raise MalformedReply(f"{exc.__class__.__name__}: {exc}") from exc

        return self.http._call("POST", f"{self.root}/completion", body, read, extensions)

    def _request(self, ids: list[int], config: GenerationConfig, extensions: dict | None = None):
        if self.api != "auto":
            return (self._vllm if self.api == "vllm" else self._llamacpp)(ids, config, True, extensions)
        failures: list[tuple[str, BackendError]] = []
        for api, call in (("vllm", self._vllm), ("llamacpp", self._llamacpp)):
            try:
                got = call(ids, config, False, extensions)
            except BackendError as exc:  # e.g. llama.cpp rejects vLLM's fields, or /completion does not exist
                failures.append((api, exc))
                continue
            if got[0] is not None:
                self.api = api  # probed once; later calls go straight there
                return got
        if len(failures) == 2 and all(isinstance(exc, ServerUnreachable) for _, exc in failures):
            raise failures[0][1]  # the server is not there at all: say that, not "no ids"
        said = "; ".join(f"{api}: {' '.join(str(exc).split())[:160]}" for api, exc in failures)
        where = self.http.pool.endpoints[extensions[PIN]].url if extensions else self.http.base_url
        raise TokenIdsUnsupported(f"server at {where} {NO_IDS}" + (f" (it said: {said})" if said else ""))

    def check_token_ids(self) -> None:
        """A 1-token request to each endpoint, so that a server that cannot return ids (or a
        pool where one endpoint cannot) is a load error (one line before any run) rather than
        every run's backend failure. An unreachable endpoint is left to the run, which reports
        outages itself."""
        probe = self.tokenizer.encode("Hi", add_special_tokens=False) or [0]
        for index, endpoint in enumerate(self.http.pool.endpoints):
            try:
                self._request(probe, GenerationConfig(max_new_tokens=1, temperature=0.0), pinned(index))
            except TokenIdsUnsupported as exc:
                said = str(exc)
                named = not self.http.several or str(endpoint.url) in said  # a pool's error names its endpoint
                raise ModelLoadError(said if named else f"endpoint {endpoint.url} of the pool: {said}") from None
            except BackendError:
                pass

    # ---- the LocalLLM primitives the agent uses ---------------------------------------
    def continue_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Completion:
        start = time.perf_counter()
        out, logprobs, usage = self._request(list(prompt_ids), config)
        ids, reason = list(out), "length"
        if ids and ids[-1] in self.eos:
            reason = "stop"  # the model ended its turn; the id stays (it is what it sampled)
        body = ids[:-1] if reason == "stop" else ids
        text, stop = decode(self.tokenizer, body), None
        hit = find_stop(text, config.stop)
        if hit:
            keep, text = cut_at(self.tokenizer, body, text, hit[0])
            ids, reason, stop = body[:keep], "stop", hit[1]
        if logprobs is not None:
            logprobs = logprobs[: len(ids)] if len(logprobs) >= len(ids) else None
        return Completion(text=text, token_ids=ids, finish_reason=reason, stop_sequence=stop,
                          prompt_tokens=int(usage.get("prompt_tokens") or len(prompt_ids)),
                          completion_tokens=len(out), seconds=time.perf_counter() - start, logprobs=logprobs)

    def continue_batch(self, prompts: Sequence[Sequence[int]], configs: Sequence[GenerationConfig]) -> list[Completion]:
        """The rows as concurrent requests: the server batches them itself."""
        if len(prompts) <= 1:
            return [self.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]
        with concurrent.futures.ThreadPoolExecutor(min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self.continue_ids, prompts, configs))

    def sample_ids(self, prompt_ids: Sequence[int], config: GenerationConfig, n: int) -> list[Completion]:
        seeds = [None if config.seed is None else config.seed + i for i in range(n)]
        return self.continue_batch([prompt_ids] * n, [config.model_copy(update={"seed": s}) for s in seeds])

    def stream_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[str]:
        yield self.continue_ids(prompt_ids, config).text
