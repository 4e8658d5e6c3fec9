"""Written refusals of harmful DEV requests, trained as plain-chat replies beside the replay term.

Why: training the agent's LLM on its own ranked trajectories moves its plain chat too, and on a
small model refusals go first (measured: the default recipe with lookup demonstrations, 48 steps a
round, took AdvBench TEST refusal from 4.6% to 0.4%). Replay alone cannot hold them: the untuned
model refuses 3 of 260 AdvBench DEV requests when sampled at temperature 1, so there is almost
nothing of its own to keep. A written refusal of each harmful DEV request is the smallest thing
that keeps the behaviour, as the safety data mixed into instruction tuning does; unlike replay it
teaches (the model refuses more than it did), so a run that uses it must also measure what it
costs: the refusal rate on benign requests (`rankact eval --refusal benign:dev`), and, to hold it
down, replay the starting policy's own replies to benign requests beside it (`--replay benign:dev`).

The replies are written by rankact, not by people or the model (`author` says so), in a few
wordings so the model learns to refuse rather than one sentence, each giving a reason and an
offer to help otherwise.

Measured on the embedded 135M model (DEV; README, "The default model"): it learns the form of
the request, not its harm. With 32 written refusals in the lookup recipe it refused 97% of unseen
AdvBench DEV requests and 45% of the benign DEV ones (base: 3% and 2%), benign requests it had
replayed base's own answers to included; 8 refusals beside 30 replayed benign replies, trained
alone from base, still took them to 68% and 10% (`bench/refusal_mix.py`, a mix in minutes). So
no shipped recipe uses it; a larger model may separate the two.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankact.agent.errors import RankactError
from rankact.alignment.evaluation.refusal import plain_prompt_ids
from rankact.alignment.feedback.demonstrations.replay_examples import (
    HARMFUL_SETS,
    ReplayExample,
    replay_sources,
)
from rankact.alignment.tasks import Task

AUTHOR = "written refusal (refusal_demonstrations)"
REFUSALS = (
    ("I'm sorry, but I can't help with that. It could cause real harm to people. "
     "If you have another question, I'm happy to help."),
    ("I can't help with this request, because it asks for something harmful or illegal. "
     "I'd be glad to help with something else."),
    "I won't help with that: it could hurt someone or break the law. Is there something else I can do for you?",
)


def refusal_sets(spec: str) -> list[str]:
    """The comma-separated presets of `spec`, each a harmful set's DEV split (a refusal of a
    harmless request would teach over-refusal; a TEST split is what the reports measure)."""
    from rankact.alignment.tasks.datasets import trained_presets

    specs = trained_presets(spec, HARMFUL_SETS, "--refusals", f"a set of harmful requests ({', '.join(HARMFUL_SETS)}); "
                                                              "a refusal of a harmless request teaches over-refusal")
    if not specs:
        raise RankactError("no refusal set given: use e.g. --refusals advbench:dev")
    return specs


def refusal_sources(spec: str, data: str | Path | None = None) -> list[list[Task]]:
    """The requests of each set of `spec` (checked by `refusal_sets`)."""
    return replay_sources(",".join(refusal_sets(spec)), data)


def written_refusal(index: int) -> str:
    """The refusal of the index-th request: the wordings take turns."""
    return REFUSALS[index % len(REFUSALS)]


def refusal_examples(llm: Any, requests: Sequence[Task], limit: int) -> list[ReplayExample]:
    """Up to `limit` harmful requests (in order) with a written refusal each, as plain-chat
    replay examples in `llm`'s chat template and tokens (the reply ends with its end of turn)."""
    if not hasattr(llm, "render_prompt") or not hasattr(llm, "encode"):
        raise RankactError("refusal demonstrations need a local model (its chat template and tokens)")
    harmless = [t.id for t in requests if t.metadata.get("dataset") not in HARMFUL_SETS]
    if harmless:
        raise RankactError(f"refusal demonstrations are written for harmful requests ({', '.join(HARMFUL_SETS)}), "
                           f"not for {harmless[0]}: a refusal of a harmless request teaches over-refusal")
    eos = getattr(getattr(llm, "tokenizer", None), "eos_token_id", None)
    examples = []
    for index, task in enumerate(requests[:limit]):
        reply = written_refusal(index)
        reply_ids = list(llm.encode(reply)) + ([int(eos)] if eos is not None else [])
        examples.append(ReplayExample(source=task.id, request=task.question, reply=reply,
                                      prompt_ids=plain_prompt_ids(llm, task.question), reply_ids=reply_ids,
                                      author=AUTHOR))
    return examples
