"""One string picks the backend: the same agent runs on the embedded model, a local
model folder or GGUF file, an OpenAI-compatible server, or a scripted replay.

Local models run on one of two engines: "torch" (`TransformersLLM`, the model alignment
trains, with lockstep batching and per-row seeds) or "ctranslate2" (`CTranslate2LLM`, int8,
~2.5x faster single-row decoding on CPU). "torch" is the default because it was measured
better for what rankact does most: int8 log-probs differ from the trained model's by 0.37 nats
per token (an evaluation would measure another model than the one trained), and CTranslate2
cannot batch seeded sampling per row (collection and PPO rollouts). "auto" picks CTranslate2
when it is installed and the model is meant for the CPU. Training never comes through here:
the trainers load their PyTorch models themselves."""
from __future__ import annotations

import os
from pathlib import Path

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm.base import LLM

# "default": the embedded SmolLM2 with rankact's aligned adapter; "base": the same model untuned.
EMBEDDED_SPECS = ("default", "base")
ACCEPTED = ("accepted: 'default' (embedded SmolLM2, aligned by rankact), 'base' (the same, untuned), "
            "a Hugging Face model folder, a .gguf file, "
            "http(s)://HOST/v1 (OpenAI-compatible server; several, comma-separated, are one pool), or scripted:PATH (JSON list of outputs)")

_LOCAL_KWARGS = {"device", "dtype"}
ENGINES = ("auto", "torch", "ctranslate2")
_HTTP_KWARGS = {"api_key", "model", "timeout", "max_retries", "backoff", "transport", "tokenizer", "token_api",
                "max_in_flight", "deadline", "max_reply_bytes"}


def _only(kwargs: dict, allowed: set[str], spec: str) -> dict:
    unknown = set(kwargs) - _LOCAL_KWARGS - _HTTP_KWARGS
    if unknown:
        raise TypeError(f"load_llm got unexpected keyword arguments: {sorted(unknown)}")
    # Options meant for another kind of backend are ignored (e.g. --api-key with a local model).
    return {k: v for k, v in kwargs.items() if k in allowed and v is not None}


def load_llm(spec: str | Path = "default", engine: str = "torch", **kwargs) -> LLM:
    """'default' | 'base' | path to a model folder | path.gguf | http(s)://HOST/v1 | scripted:PATH.
    Several server URLs separated by commas are one pool of endpoints serving the same model
    (`rankact.agent.llm.endpoint_pool`; `max_in_flight` requests per endpoint).
    `engine` (local models only): "auto", "torch" or "ctranslate2". A server with `tokenizer`
    (a folder, "default" or a cached hub name) is driven with token ids (`token_api`: auto,
    vllm or llamacpp)."""
    if engine not in ENGINES:
        raise ModelLoadError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    spec = str(spec).strip()
    if not spec:
        raise ModelLoadError(f"empty model spec; {ACCEPTED}")
    if spec.startswith(("http://", "https://")):
        from rankact.agent.llm.endpoint_pool import split_endpoints
        from rankact.agent.llm.openai_http import OpenAICompatibleLLM

        odd = [part for part in split_endpoints(spec) if not part.startswith(("http://", "https://"))]
        if odd:
            raise ModelLoadError(f"every endpoint of a pool must be an http(s):// URL, not {odd[0]!r}")

        opts = _only(kwargs, _HTTP_KWARGS, spec)
        opts.setdefault("api_key", os.environ.get("RANKACT_API_KEY") or os.environ.get("OPENAI_API_KEY"))
        tokenizer, token_api = opts.pop("tokenizer", None), opts.pop("token_api", None) or "auto"
        if tokenizer is not None:  # token-in/token-out (agent.llm.token_io)
            from rankact.agent.llm.token_io import ServedTokensLLM

            llm = ServedTokensLLM(spec, tokenizer, api=token_api, **opts)
            try:
                llm.check_token_ids()
            except ModelLoadError:
                llm.close()
                raise
            return llm
        return OpenAICompatibleLLM(spec, **opts)
    if spec.startswith("scripted:"):
        from rankact.agent.llm.scripted import ScriptedLLM

        _only(kwargs, set(), spec)
        return ScriptedLLM.from_file(spec.removeprefix("scripted:"))
    opts = _only(kwargs, _LOCAL_KWARGS, spec)
    if spec not in EMBEDDED_SPECS and not Path(spec).expanduser().exists():
        raise ModelLoadError(f"model not found: {spec!r}; {ACCEPTED}")
    if pick_engine(engine, **opts) == "ctranslate2":
        from rankact.agent.llm.ct2 import CTranslate2LLM

        if opts.get("device", "cpu") != "cpu" or opts.get("dtype") is not None:
            raise ModelLoadError("the ctranslate2 engine runs on the CPU in its own int8 format; "
                                 "drop device/dtype or use engine='torch'")
        return CTranslate2LLM(spec)
    from rankact.agent.llm.local import TransformersLLM

    return TransformersLLM(spec, **opts)


def pick_engine(engine: str = "auto", *, device: str | None = None, dtype=None) -> str:
    """The engine "auto" means here: CTranslate2 for a CPU model when it is installed."""
    if engine != "auto":
        return engine
    from rankact.agent.llm.ct2 import available

    return "ctranslate2" if available() and device in (None, "cpu") and dtype is None else "torch"
