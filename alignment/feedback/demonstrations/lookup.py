"""Lookup demonstrations written from gold answers: search with the question, then answer with
the gold answer the passages hold.

Why: on lookup questions the embedded model never copies an answer out of what it retrieved
(NQ DEV: it searches, then answers from memory or searches again until the loop guard stops
it), so no sampled run is right and ranking has nothing to push up, as with two-step
arithmetic. Writing a demonstration per training question by hand does not scale to a lookup
set; the gold answer does it, under one rule: a demonstration only answers what its own
observation shows. When the search with the question does not bring back a gold answer, the
question gets no demonstration, so none teaches the model to answer past its passages.

Like the simulated annotator, this uses gold answers of DEV questions: it is a way to start a
task, labelled as such (`author`), not people's judgement.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import DemonstrationError
from rankact.alignment.evaluation.metrics import normalize_answer
from rankact.alignment.feedback.demonstrations.recording import (
    Demonstration,
    DemonstrationStep,
    fits_string_slot,
)

AUTHOR = "gold answers (lookup_demonstrations)"
SEARCH_THOUGHT = "Search the passages for the answer"
ANSWER_THOUGHT = "I now know the answer"


def answer_in_passages(answers: Iterable[str], passages: str) -> str | None:
    """The first gold answer (as written) that the passages contain as whole words after SQuAD
    normalization; None when none does."""
    text = f" {normalize_answer(passages)} "
    for answer in answers:
        words = normalize_answer(answer)
        if words and f" {words} " in text and fits_string_slot(answer):
            return answer.strip()
    return None


def lookup_demonstration(question: str, answers: Sequence[str], search: Callable[[str], str],
                         tool: str = "search") -> Demonstration | None:
    """Search with the question, answer with the gold answer the passages hold; None when the
    passages hold none (or the question cannot be written into a JSON argument)."""
    if not fits_string_slot(question):
        return None
    answer = answer_in_passages(answers, search(question))
    if answer is None:
        return None
    return Demonstration(question=question, author=AUTHOR, steps=[
        DemonstrationStep(thought=SEARCH_THOUGHT, action=tool, action_input={"query": question}),
        DemonstrationStep(thought=ANSWER_THOUGHT, final_answer=answer),
    ])


def lookup_demonstrations(tasks: Iterable, search: Callable[[str], str], limit: int | None = None,
                          tool: str = "search") -> list[Demonstration]:
    """Demonstrations for tasks (anything with `question` and `answers`) in order, skipping those
    whose passages hold no gold answer, until `limit` are written."""
    written: list[Demonstration] = []
    for task in tasks:
        if limit is not None and len(written) >= limit:
            break
        demonstration = lookup_demonstration(task.question, task.answers, search, tool)
        if demonstration is not None:
            written.append(demonstration)
    return written


def demonstrate_preset(spec: str, llm: Any, *, data: str | Path | None = None, limit: int | None = None,
                       max_steps: int = 3) -> tuple[list[Demonstration], list[Trajectory]]:
    """Lookup demonstrations of a preset's questions (`nq:dev`), each searched over the preset's
    own passages (the agent's search settings, so the observation holds the answer), and their
    trajectories recorded through a guided agent on `llm`."""
    from rankact.agent.build import load_index
    from rankact.alignment.feedback.demonstrations.recording import match_tasks, record_demonstration
    from rankact.alignment.tasks.agents import TaskAgents
    from rankact.alignment.tasks.indexes import tasks_and_index
    from rankact.tools.search import SearchTool

    tasks, index = tasks_and_index(spec, data, progress=False)
    if index is None:
        raise DemonstrationError(f"{spec} has no passages to search: lookup demonstrations need a set "
                                 "with a corpus (nq, hotpot)")
    retriever = load_index(index)
    search = SearchTool(retriever)
    demonstrations = lookup_demonstrations(tasks, lambda q: search.run(q).text, limit=limit)
    agents = TaskAgents(llm, retriever=retriever, max_steps=max_steps)
    return demonstrations, [record_demonstration(d, agents(t)) for d, t in match_tasks(demonstrations, tasks)]
