"""Collapse monitors read from what a policy writes, not only from what it scores.

Last round's shipped adapter passed every monitor (tool-call rate, KL budget) while each of its
thoughts had become one of two constant strings and its success on held-out phrasings stayed at
base's. These measure that directly, from held-out runs:

- `distinct_thought_ratio`: distinct thoughts over thoughts (whitespace- and case-normalized);
  a policy that writes the same thought everywhere tends to 0.
- `thought_token_entropy`: entropy, in bits, of the distribution of words over all thoughts; a
  template copied everywhere has low entropy even when a number inside it varies.
- `template_spread`: success per template (or any group key), and the spread between the best
  and the worst group: a policy that learned one phrasing shows a wide spread.
- `collapse_warnings`: the warnings a round raises against round 0 (thoughts collapsed to under
  half of base's distinct ratio, or success out of distribution fell while in distribution rose).

Pure functions over trajectories and per-task success, so tests check them numerically.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

from rankact.agent.trajectory import Trajectory


def thoughts(trajectories: Iterable[Trajectory]) -> list[str]:
    """Every non-empty thought of every step, normalized (lower case, single spaces)."""
    out = []
    for trajectory in trajectories:
        for step in trajectory.steps:
            text = " ".join((step.thought or "").lower().split())
            if text:
                out.append(text)
    return out


def distinct_thought_ratio(trajectories: Iterable[Trajectory]) -> float:
    """Distinct thoughts over thoughts; 1.0 when there are none (nothing has collapsed)."""
    written = thoughts(trajectories)
    return len(set(written)) / len(written) if written else 1.0


def thought_token_entropy(trajectories: Iterable[Trajectory]) -> float:
    """Shannon entropy (bits) of the word distribution over all thoughts."""
    counts = Counter(word for text in thoughts(trajectories) for word in re.findall(r"\w+", text))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


class TemplateSpread(BaseModel):
    by_group: dict[str, float] = Field(default_factory=dict)  # success rate per group
    spread: float = 0.0  # best group's success minus the worst's


def template_spread(successes: Sequence[float], groups: Sequence[str | None]) -> TemplateSpread:
    """Success per group (e.g. each task's template id) and best minus worst; tasks without a
    group are left out."""
    totals: dict[str, list[float]] = {}
    for success, group in zip(successes, groups, strict=True):
        if group is not None:
            totals.setdefault(group, []).append(success)
    by_group = {g: sum(v) / len(v) for g, v in sorted(totals.items())}
    return TemplateSpread(by_group=by_group,
                          spread=max(by_group.values()) - min(by_group.values()) if by_group else 0.0)


def collapse_warnings(round_index: int, current: Mapping[str, float | None], base: Mapping[str, float | None],
                      previous: Mapping[str, float | None] | None = None) -> list[str]:
    """Warnings for a round's monitors against round 0 (`base`) and the round before (`previous`).
    Keys: `distinct_thought_ratio`, `success_in`, `success_out` (either success may be None)."""
    warnings = []
    ratio, base_ratio = current.get("distinct_thought_ratio"), base.get("distinct_thought_ratio")
    if ratio is not None and base_ratio is not None and ratio < base_ratio / 2:
        warnings.append(f"round {round_index}: thoughts collapsed: {ratio:.0%} of them distinct "
                        f"(round 0: {base_ratio:.0%})")
    before = previous or base
    ins, outs = current.get("success_in"), current.get("success_out")
    ins_before, outs_before = before.get("success_in"), before.get("success_out")
    if None not in (ins, outs, ins_before, outs_before) and ins > ins_before and outs < outs_before:
        warnings.append(f"round {round_index}: success out of distribution fell ({outs_before:.0%} -> {outs:.0%}) "
                        f"while in distribution it rose ({ins_before:.0%} -> {ins:.0%})")
    return warnings
