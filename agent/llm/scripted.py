"""A backend that replays a fixed list of outputs: for tests, examples and docs.

Each call returns the next output, cut at the first stop string it contains (as a real
server honouring `stop` would). Every call's messages are recorded in `.calls`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from rankact.agent.errors import BackendError, ModelLoadError
from rankact.agent.llm.base import ChatMessage, Completion, GenerationConfig, ModelInfo, as_messages


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """(text before the earliest stop string, that stop) or (text, None)."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return text, None
    pos, stop = min(hits, key=lambda h: (h[0], -len(h[1])))
    return text[:pos], stop


class ScriptedLLM:
    # Replies come out in call order, so trajectories must run one after another: a lockstep
    # driver (agent.batch) would hand one trajectory's reply to another.
    one_trajectory_at_a_time = True

    def __init__(self, outputs: Sequence[str], *, name: str = "scripted"):
        if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
            raise TypeError("ScriptedLLM needs a list of strings")
        self.outputs = list(outputs)
        self.position = 0
        self.calls: list[list[ChatMessage]] = []
        self.info = ModelInfo(backend="scripted", name=name)

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedLLM:
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"script file not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"cannot read script file {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"script file {path} is not valid JSON: {exc}") from exc
        except RecursionError:
            raise ModelLoadError(f"script file {path} is not a list of strings: JSON nested too deeply") from None
        if not isinstance(data, list) or not all(isinstance(o, str) for o in data):
            raise ModelLoadError(f"script file {path} must hold a JSON list of strings")
        if not data:  # it could answer nothing: every run would end in a backend failure
            raise ModelLoadError(f"script file {path} holds no outputs; it needs at least one string")
        return cls(data, name=path.name)

    @property
    def remaining(self) -> int:
        return len(self.outputs) - self.position

    def generate(self, messages: Sequence[ChatMessage], config: GenerationConfig) -> Completion:
        self.calls.append(as_messages(messages))
        if self.position >= len(self.outputs):
            raise BackendError(f"script exhausted after {len(self.outputs)} outputs")
        raw = self.outputs[self.position]
        self.position += 1
        text, stop = cut_at_stop(raw, config.stop)
        return Completion(
            text=text, finish_reason="stop", stop_sequence=stop,
            prompt_tokens=sum(len(m.content.split()) for m in self.calls[-1]),
            completion_tokens=len(text.split()),
        )

    def sample(self, messages: Sequence[ChatMessage], config: GenerationConfig, n: int) -> list[Completion]:
        if self.remaining < n:
            self.calls.append(as_messages(messages))
            raise BackendError(
                f"script exhausted after {len(self.outputs)} outputs (sample needs {n}, {self.remaining} left)"
            )
        return [self.generate(messages, config) for _ in range(n)]

    def stream(self, messages: Sequence[ChatMessage], config: GenerationConfig) -> Iterator[str]:
        text = self.generate(messages, config).text
        # word-sized pieces, so consumers of a stream see more than one piece
        piece = ""
        for ch in text:
            piece += ch
            if ch.isspace():
                yield piece
                piece = ""
        if piece:
            yield piece
