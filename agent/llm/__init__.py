"""LLM backends: the interface every backend implements (`base`), and the backends. Every module:

| module | holds |
|---|---|
| `base` | `LLM` / `LocalLLM` protocols, `ChatMessage`, `GenerationConfig`, `Completion` |
| `loading` | `load_llm(spec, engine=)`: one string picks the backend, `engine` the local engine |
| `local` | `TransformersLLM`: the model alignment trains, with guided-decoding primitives |
| `lockstep` | lockstep batched decoding: per-row KV caches and seeds, continuous batching |
| `ct2` | `CTranslate2LLM`: the same primitives on the CTranslate2 int8 CPU engine (ask/collect/eval) |
| `ct2_files` | a model folder converted to CTranslate2 once and cached |
| `chat_tokens` | chat template, encode/decode and the exact stop-string cut rule both engines share |
| `parity` | mean per-token log-prob gap between an engine and PyTorch |
| `openai_http` | `OpenAICompatibleLLM`: any OpenAI-compatible server over httpx |
| `tool_calls` | native tool calls in the OpenAI wire format, streamed calls assembled |
| `token_io` | `ServedTokensLLM`: token ids in and out of a served model (vLLM, llama.cpp) |
| `endpoint_pool` | `EndpointPool`: one served model behind several endpoints (an httpx transport) |
| `scripted` | `ScriptedLLM`: replays a list of replies (tests, docs) |
| `model_files` | the embedded GGUF model, converted once and cached |
| `lora_merge` | a PEFT LoRA adapter merged into plain weights (the default model's adapter) |
| `stops` | stop-string holdback shared by the streaming backends |
| `quiet` | keeps transformers' progress bars and advisory warnings out of our commands' output |

Backends import torch/httpx lazily, so `from rankact.agent.llm import GenerationConfig` stays cheap.
"""
from rankact.agent.llm.base import (
    LLM,
    ChatMessage,
    Completion,
    FinishReason,
    GenerationConfig,
    LocalLLM,
    ModelInfo,
    NativeToolCall,
    Role,
    as_messages,
)
from rankact.agent.llm.loading import load_llm

__all__ = ["LLM", "ChatMessage", "Completion", "FinishReason", "GenerationConfig", "LocalLLM", "ModelInfo", "NativeToolCall", "Role",
           "as_messages", "load_llm"]
