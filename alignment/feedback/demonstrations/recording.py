"""Demonstrations: trajectories a person wrote, recorded through the real agent.

Ranking can only prefer what the policy sampled. When no sample of a question ever takes
the right path (the embedded model splits `(a + b) * c` into `a + b` and stops there, in
every one of 160 runs at temperatures 1.0 and 1.5 on DEV), best-of-K and group-relative
training have nothing to push up. A demonstration fills that gap, as InstructGPT's first
stage does: a person writes the steps (thought, tool call or final answer), and the agent
runs them with its real tools and prompt, so the recorded trajectory has the policy's own
chat template, token ids and segment layout, and the observations come from the tools.
It then joins the question's sampled trajectories, is ranked with them (a wrong
demonstration ranks low like any run), and trains through the same trainers.

How it runs: `DemonstrationLLM` stands in for the policy's token-level backend under guided
decoding (agent.guided). Guided decoding asks for two things: a slot to fill (`Continue`:
the thought, an argument value, the final answer) and a choice among options (`Score`:
Action or Final Answer, which tool, an enum value). The stand-in answers each from the
demonstration, in order, and never runs the model, so recording costs no generation.
A demonstration the agent cannot follow (a tool it lacks, other arguments than the tool's,
a string with a quote that JSON slots cannot hold) raises `DemonstrationError` naming the step.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rankact.agent.guided import ACTION, FINAL, GuidedConfig, _schema_args, supports_guidance
from rankact.agent.llm import Completion, GenerationConfig
from rankact.agent.llm.base import ModelInfo
from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import DemonstrationError

SOURCE = "demonstration"
_DECLINED = -1e4  # an option the demonstration does not take: far below any bias the decoder adds


class DemonstrationStep(BaseModel):
    """One step: a thought and either a tool call or the final answer."""

    model_config = ConfigDict(extra="forbid")

    thought: str = Field(min_length=1)
    action: str | None = None
    action_input: dict[str, Any] | None = None
    final_answer: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DemonstrationStep:
        if (self.action is None) == (self.final_answer is None):
            raise ValueError("a step has either an action (with action_input) or a final_answer")
        if self.action is not None and self.action_input is None:
            raise ValueError(f"the step calls {self.action!r} without action_input")
        if "\n" in self.thought or (self.final_answer is not None and "\n" in self.final_answer):
            raise ValueError("thoughts and final answers are one line each")
        return self


class Demonstration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    steps: list[DemonstrationStep] = Field(min_length=1)
    author: str | None = None

    @model_validator(mode="after")
    def _ends_with_answer(self) -> Demonstration:
        if any(s.final_answer is not None for s in self.steps[:-1]) or self.steps[-1].final_answer is None:
            raise ValueError("only the last step, and always the last step, gives the final_answer")
        return self


def fits_string_slot(text: str) -> bool:
    """Whether guided decoding's string slot can hold `text` as written: no quote, backslash or
    line break (the slot is the inside of a JSON string, ended by its closing quote)."""
    return not any(c in text for c in ('"', "\\", "\n"))


def write_demonstrations(demonstrations: Iterable[Demonstration], path: str | Path) -> int:
    """One JSON line per demonstration, the format `read_demonstrations` reads; returns how many."""
    lines = [d.model_dump_json(exclude_none=True) for d in demonstrations]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read_demonstrations(path: str | Path) -> list[Demonstration]:
    """Demonstrations from a JSONL file, one per line; errors name the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DemonstrationError(f"cannot read demonstrations {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DemonstrationError(f"{path} is not UTF-8 text") from None
    demonstrations = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            demonstrations.append(Demonstration.model_validate_json(line))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise DemonstrationError(f"{path}:{number}: {where + ': ' if where else ''}"
                                     f"{problem['msg'].removeprefix('Value error, ')}") from None
    if not demonstrations:
        raise DemonstrationError(f"{path} holds no demonstrations")
    return demonstrations


@dataclass
class _Slot:
    """One request guided decoding will make: text to fill in, or the option to pick."""

    kind: str  # "fill" or "pick"
    text: str
    step: int


def _slots(demonstration: Demonstration, tools: Sequence[Any], config: GuidedConfig) -> list[_Slot]:
    """The demonstration as the requests `GuidedDecoder.step_requests` makes, in its order
    (a choice with a single option makes no request, so it has no slot)."""
    by_name = {t.name: t for t in tools}
    slots: list[_Slot] = []
    for i, step in enumerate(demonstration.steps):
        slots.append(_Slot("fill", " " + step.thought, i))
        if step.final_answer is not None:
            slots += [_Slot("pick", FINAL, i), _Slot("fill", " " + step.final_answer, i)]
            continue
        slots.append(_Slot("pick", ACTION, i))
        tool = by_name.get(step.action)
        if tool is None:
            raise DemonstrationError(f"step {i + 1} calls {step.action!r}, which the agent does not have "
                                     f"(its tools: {', '.join(by_name) or 'none'})")
        if len(by_name) > 1:
            slots.append(_Slot("pick", " " + step.action, i))
        slots += _input_slots(step.action_input, tool, config, i)
    return slots


def _input_slots(values: dict[str, Any], tool: Any, config: GuidedConfig, i: int) -> list[_Slot]:
    plain = getattr(tool, "single_string_input", False) and config.string_input == "plain"
    args = None if plain else _schema_args(tool)
    if args is None:  # free-form: the whole input is one line of JSON
        return [_Slot("fill", " " + json.dumps(values, ensure_ascii=False), i)]
    names = [a.name for a in args]
    if sorted(values) != sorted(names):
        raise DemonstrationError(f"step {i + 1}: {tool.name} takes exactly the arguments {names} under guided "
                                 f"decoding; the demonstration gives {sorted(values)}")
    slots = []
    for arg in args:
        value = values[arg.name]
        if arg.type == "string":
            if not isinstance(value, str) or not fits_string_slot(value):
                raise DemonstrationError(f"step {i + 1}: {arg.name!r} must be a string without quotes, backslashes "
                                         "or line breaks (the agent's string slot holds it as written)")
            slots.append(_Slot("fill", value, i))
        elif arg.type == "enum":
            if value not in arg.choices:
                raise DemonstrationError(f"step {i + 1}: {arg.name!r} is one of {list(arg.choices)}, not {value!r}")
            slots.append(_Slot("pick", " " + json.dumps(value, ensure_ascii=False), i))
        elif arg.type == "boolean":
            if not isinstance(value, bool):
                raise DemonstrationError(f"step {i + 1}: {arg.name!r} must be true or false")
            slots.append(_Slot("pick", " true" if value else " false", i))
        else:
            slots.append(_Slot("fill", " " + json.dumps(value), i))
    return slots


class DemonstrationLLM:
    """A token-level backend that answers guided decoding's requests from one demonstration.

    Every attribute but the request methods and `info` is the wrapped backend's, so the prompt,
    chat template and token ids are the policy's. Requests must come in the demonstration's
    order; anything else raises DemonstrationError naming the step.
    """

    def __init__(self, llm: Any, demonstration: Demonstration, tools: Sequence[Any],
                 config: GuidedConfig | None = None) -> None:
        if not supports_guidance(llm):
            raise DemonstrationError("recording a demonstration needs a local model (token-level access): "
                                     f"{type(llm).__name__} has none")
        self._llm = llm
        self.demonstration = demonstration
        self._slots = _slots(demonstration, tools, config or GuidedConfig())
        self._next = 0
        self.failure: DemonstrationError | None = None  # the agent loop records request errors as run errors
        self.info = ModelInfo(backend=SOURCE, name=llm.info.name, revision=llm.info.revision)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def _take(self, kind: str) -> _Slot:
        slot = self._slots[self._next] if self._next < len(self._slots) else None
        if slot is None or slot.kind != kind:
            where = f"step {slot.step + 1}" if slot else "after its last step"
            self._fail(f"the agent went off the demonstration at {where}: it asked for "
                       f"{'an option' if kind == 'pick' else 'text'}")
        self._next += 1
        return slot

    def _fail(self, message: str) -> None:
        self.failure = self.failure or DemonstrationError(message)
        raise self.failure

    def continue_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Completion:
        slot = self._take("fill")
        ids = self._llm.encode(slot.text)
        return Completion(text=slot.text, token_ids=ids, finish_reason="stop",
                          stop_sequence=config.stop[0] if config.stop else None,
                          prompt_tokens=len(prompt_ids), completion_tokens=len(ids))

    def score_continuations(self, prompt_ids: Sequence[int], options: Sequence[Sequence[int]]) -> list[float]:
        slot = self._take("pick")
        texts = [self._llm.decode(list(o)) for o in options]
        if slot.text not in texts:
            self._fail(f"step {slot.step + 1}: {slot.text.strip()!r} is not among the agent's options "
                       f"({', '.join(t.strip() for t in texts)})")
        return [0.0 if t == slot.text else _DECLINED for t in texts]

    # The batched entry points would otherwise reach the wrapped model through __getattr__.
    def continue_batch(self, prompts, configs) -> list[Completion]:
        return [self.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]

    def score_batch(self, prompts, options) -> list[list[float]]:
        return [self.score_continuations(p, o) for p, o in zip(prompts, options, strict=True)]

    def decode_session(self) -> None:
        return None  # no model runs, so nothing to batch


def record_demonstration(demonstration: Demonstration, agent: Any) -> Trajectory:
    """Run `demonstration` through a copy of `agent` (a guided agent on a local model) whose
    model answers from the demonstration; the trajectory is tagged `metadata.source =
    "demonstration"`. Raises DemonstrationError when the agent cannot follow it."""
    if not getattr(agent, "guided", False):
        raise DemonstrationError("recording a demonstration needs a guided agent on a local model")
    follower = copy.copy(agent)
    follower.llm = stand_in = DemonstrationLLM(agent.llm, demonstration, agent.tools, agent.guided_config)
    follower.max_steps = max(agent.max_steps, len(demonstration.steps))
    trajectory = follower.run(demonstration.question, temperature=0.0)
    if stand_in.failure is not None:
        raise stand_in.failure
    _check_followed(demonstration, trajectory)
    trajectory.metadata = {**trajectory.metadata, "source": SOURCE,
                           **({"author": demonstration.author} if demonstration.author else {})}
    return trajectory


def _check_followed(demonstration: Demonstration, trajectory: Trajectory) -> None:
    if not _same_steps(demonstration, trajectory):
        raise DemonstrationError(
            f"the agent did not follow the demonstration of {demonstration.question!r} (status "
            f"{trajectory.status}; recorded {len(trajectory.steps)} steps, the demonstration has "
            f"{len(demonstration.steps)})")


def match_tasks(demonstrations: Sequence[Demonstration], tasks: Sequence[Any]) -> list[tuple[Demonstration, Any]]:
    """Each demonstration with the task that asks its question; DemonstrationError names any
    demonstration whose question is not a task (it would have no samples to be ranked with)."""
    by_question = {t.question: t for t in tasks}
    unmatched = [d.question for d in demonstrations if d.question not in by_question]
    if unmatched:
        raise DemonstrationError(f"{len(unmatched)} demonstrations ask questions that are not among the tasks "
                                 f"(e.g. {unmatched[0]!r}): a demonstration is ranked with its question's samples")
    return [(d, by_question[d.question]) for d in demonstrations]


def add_demonstrations(store: Any, matched: Sequence[tuple[Demonstration, Any]], agent_for) -> int:
    """Record each (demonstration, task) with `agent_for(task)` and store it under the task's
    question, unless the store already holds it (so a rerun adds nothing twice). Returns how
    many were added."""
    added = 0
    for demonstration, task in matched:
        store.add_question(task.question, task.id, gold=task.answers, metadata=task.metadata)
        if any(t.metadata.get("source") == SOURCE and _same_steps(demonstration, t)
               for t in store.list(task.id)):
            continue
        trajectory = record_demonstration(demonstration, agent_for(task))
        trajectory.metadata = {**trajectory.metadata, "task_id": task.id}
        store.add(trajectory, question_id=task.id, gold=task.answers)
        added += 1
    return added


def _same_steps(demonstration: Demonstration, trajectory: Trajectory) -> bool:
    return ([(s.action, s.action_input, s.final_answer) for s in trajectory.steps]
            == [(s.action, s.action_input, s.final_answer) for s in demonstration.steps])
