"""Small hand-written trajectories for trying the ranking page without running a model
(`rankact feedback demo-data`), and for tests. They are built the way the agent records
them: ReAct text in segments, with the prompt and observations marked as context."""
from __future__ import annotations

from typing import Any

from rankact.agent.trajectory import Citation, ModelRef, Segment, Step, StepError, Trajectory, Usage

SAMPLE_MODEL = ModelRef(backend="sample", name="hand-written", revision=None)
PROMPT_VERSION = "react-v1"


def _render_step(step: Step) -> str:
    parts = []
    if step.thought:
        parts.append(f"Thought: {step.thought}\n")
    if step.action:
        action_input = step.action_input
        if isinstance(action_input, dict):
            import json

            action_input = json.dumps(action_input)
        parts.append(f"Action: {step.action}\nAction Input: {action_input}\n")
    if step.final_answer is not None:
        parts.append(f"Final Answer: {step.final_answer}\n")
    return "".join(parts)


def make_trajectory(
    question: str,
    steps: list[dict[str, Any]],
    *,
    final_answer: str | None,
    status: str = "finished",
    citations: list[Citation] | None = None,
    model: ModelRef = SAMPLE_MODEL,
    metadata: dict[str, Any] | None = None,
) -> Trajectory:
    """A trajectory from plain step dicts (thought, action, action_input, observation, error,
    final_answer), with the segments the agent would have recorded."""
    built = [Step(index=i, **step) for i, step in enumerate(steps)]
    segments = [Segment(role="prompt", text=f"Answer the question using the tools.\nQuestion: {question}\n")]
    for step in built:
        step.raw = _render_step(step)
        segments.append(Segment(role="generated", text=step.raw))
        if step.observation is not None:
            segments.append(Segment(role="observation", text=f"Observation: {step.observation}\n"))
    return Trajectory(
        question=question, model=model, prompt_version=PROMPT_VERSION, status=status,
        final_answer=final_answer, citations=citations or [], steps=built, segments=segments,
        usage=Usage(llm_calls=len(built), completion_tokens=sum(len(s.raw.split()) for s in built)),
        metadata=metadata or {},
    )


_EIFFEL_DOC = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
    "Locally nicknamed 'La dame de fer', it was constructed as the centrepiece of the 1889 World's Fair. "
    "The tower is 330 metres tall, about the same height as an 81-storey building, and the tallest "
    "structure in Paris."
)


def sample_questions() -> list[tuple[str, str, list[str], list[Trajectory]]]:
    """(question id, question, gold answers, three trajectories) for a few questions."""
    q1 = "In which year was the Eiffel Tower completed?"
    q1_trajectories = [
        make_trajectory(q1, [
            {"thought": "I should look this up in the encyclopedia.", "action": "search",
             "action_input": {"query": "Eiffel Tower construction completed"}, "observation": _EIFFEL_DOC},
            {"thought": "The passage says it was built from 1887 to 1889.", "final_answer": "1889"},
        ], final_answer="1889", citations=[Citation(chunk_id="wiki-eiffel-0", source="wiki/eiffel_tower.md",
                                                    title="Eiffel Tower")]),
        make_trajectory(q1, [
            {"thought": "I remember it was built for a World's Fair.", "final_answer": "1887"},
        ], final_answer="1887"),
        make_trajectory(q1, [
            {"thought": "Search first.", "action": "search", "action_input": "{query: eiffel",
             "error": StepError(kind="parse", message="Action Input is not valid JSON"),
             "observation": "Error: Action Input is not valid JSON. Write a JSON object."},
            {"thought": "Try again.", "action": "search", "action_input": {"query": "Eiffel Tower"},
             "observation": _EIFFEL_DOC},
            {"thought": "It was finished in 1889.", "final_answer": "It was completed in 1889."},
        ], final_answer="It was completed in 1889.",
            citations=[Citation(chunk_id="wiki-eiffel-0", source="wiki/eiffel_tower.md", title="Eiffel Tower")]),
    ]
    q2 = "What is 17 multiplied by 23?"
    q2_trajectories = [
        make_trajectory(q2, [
            {"thought": "Use the calculator.", "action": "calculator", "action_input": {"expression": "17*23"},
             "observation": "391"},
            {"thought": "The result is 391.", "final_answer": "391"},
        ], final_answer="391"),
        make_trajectory(q2, [
            {"thought": "17 times 23 is about 400.", "final_answer": "401"},
        ], final_answer="401"),
        make_trajectory(q2, [
            {"thought": "Use the calculator.", "action": "calculator", "action_input": {"expression": "17*23"},
             "observation": "391"},
            {"thought": "Check again.", "action": "calculator", "action_input": {"expression": "17*23"},
             "observation": "391"},
            {"thought": "Check once more.", "action": "calculator", "action_input": {"expression": "23*17"},
             "observation": "391"},
        ], final_answer=None, status="max_steps"),
    ]
    q3 = "Who designed the Eiffel Tower's company?"
    q3_trajectories = [
        make_trajectory(q3, [
            {"thought": "Search the encyclopedia.", "action": "search", "action_input": {"query": "Eiffel Tower"},
             "observation": _EIFFEL_DOC},
            {"thought": "It is named after Gustave Eiffel, whose company designed it.",
             "final_answer": "Gustave Eiffel"},
        ], final_answer="Gustave Eiffel",
            citations=[Citation(chunk_id="wiki-eiffel-0", source="wiki/eiffel_tower.md", title="Eiffel Tower")]),
        make_trajectory(q3, [
            {"thought": "Maybe the weather tool knows.", "action": "weather", "action_input": {"city": "Paris"},
             "error": StepError(kind="unknown_tool", message="no tool named 'weather'"),
             "observation": "Error: no tool named 'weather'. Tools: search, calculator."},
        ], final_answer=None, status="error"),
        make_trajectory(q3, [
            {"thought": "I think it was Gustave Eiffel.", "final_answer": "Gustave Eiffel"},
        ], final_answer="Gustave Eiffel"),
    ]
    return [
        ("sample-eiffel-year", q1, ["1889"], q1_trajectories),
        ("sample-multiply", q2, ["391"], q2_trajectories),
        ("sample-eiffel-designer", q3, ["Gustave Eiffel"], q3_trajectories),
    ]


def load_sample_data(store) -> int:
    """Add the sample questions to a store (skipping any already there). Returns how many
    trajectories were added."""
    added = 0
    for question_id, _question, gold, trajectories in sample_questions():
        if store.count_trajectories(question_id) >= len(trajectories):
            continue
        for trajectory in trajectories:
            store.add(trajectory, question_id=question_id, gold=gold)
            added += 1
    return added
