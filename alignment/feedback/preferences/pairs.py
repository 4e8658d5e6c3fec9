"""Preference pairs: the (chosen, rejected) comparisons derived from rankings, and pair files.

Pairs are derived from raw rankings only at export or training time. This module is the one
home of the pair-file format: `write_pairs` writes what `read_pairs` reads.

Accepted JSONL lines (gzip or not), one pair each:
- `rankact feedback export --format pairs`: a `PreferencePair` with both trajectories whole;
- HH-RLHF: `{chosen, rejected}` dialogues; the shared prefix up to its last "\\n\\nAssistant:"
  is the prompt, the rest of each dialogue the response;
- TRL style: `{prompt, chosen, rejected}` strings (pairs with the same prompt form one group).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from rankact.agent.errors import RankactError
from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import PairFileError
from rankact.alignment.feedback.records.rankings import Ranking, ranked_id_pairs

# Who said it: annotators ("human"), the simulated annotator, or an app's end users.
PairSource = Literal["human", "simulated", "end-user"]


class PreferencePair(BaseModel):
    """One comparison with both trajectories in full (segments included), so trainers can
    mask prompts and observations and train only on generated tokens."""

    question_id: str
    question: str
    chosen: Trajectory
    rejected: Trajectory
    ranking_id: str | None = None
    annotator: str | None = None
    source: PairSource | None = None
    app: str | None = Field(default=None, description="end users' pairs: the app (ingest account) that relayed "
                                                       "the votes; annotators' pairs have none")
    # Steps the annotator flagged as bad, by step index: trainers never imitate them.
    chosen_flagged_steps: list[int] = Field(default_factory=list)
    rejected_flagged_steps: list[int] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TextPair(BaseModel):
    """A prompt/response comparison ({prompt, chosen, rejected}, as TRL and HH-RLHF use)."""

    prompt: str
    chosen: str
    rejected: str
    group: str | None = None  # pairs of one prompt share a group (kept in one batch)


def pairs_from_ranking(ranking: Ranking, trajectories: dict[str, Trajectory], question: str) -> list[PreferencePair]:
    flagged: dict[str, list[int]] = {}
    for flag in ranking.flags:
        flagged.setdefault(flag.trajectory_id, []).append(flag.step_index)
    return [
        PreferencePair(
            question_id=ranking.question_id,
            question=question,
            chosen=trajectories[a],
            rejected=trajectories[b],
            ranking_id=ranking.id,
            annotator=ranking.annotator,
            source=ranking.source,
            chosen_flagged_steps=sorted(set(flagged.get(a, []))),
            rejected_flagged_steps=sorted(set(flagged.get(b, []))),
        )
        for a, b in ranked_id_pairs(ranking.order)
    ]


def prompt_and_response(trajectory: Trajectory) -> tuple[str, str]:
    """Split a transcript into the prompt the model was first given and everything after.
    The response keeps observations (they are context for later steps); trainers that need
    masking use the segments instead."""
    segments = trajectory.segments
    cut = 0
    while cut < len(segments) and segments[cut].role == "prompt" and not segments[cut].forced:
        cut += 1
    prompt = "".join(s.text for s in segments[:cut])
    response = "".join(s.text for s in segments[cut:])
    return prompt, response


def to_text_pair(pair: PreferencePair) -> TextPair:
    prompt, chosen = prompt_and_response(pair.chosen)
    rejected_prompt, rejected = prompt_and_response(pair.rejected)
    if rejected_prompt != prompt:
        # Same question, different prompt (e.g. another prompt version): keep each whole.
        return TextPair(prompt="", chosen=prompt + chosen, rejected=rejected_prompt + rejected, group=pair.question_id)
    return TextPair(prompt=prompt, chosen=chosen, rejected=rejected, group=pair.question_id)


ASSISTANT = "\n\nAssistant:"



def parse_range(spec: str | None) -> slice:
    """'A:B' -> slice(A, B) with Python semantics; either side may be empty."""
    if spec is None or spec == "":
        return slice(None)
    parts = spec.split(":")
    if len(parts) != 2:
        raise RankactError(f"--range must look like A:B (e.g. 0:1800), got {spec!r}")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise RankactError(f"--range must hold integers, got {spec!r}") from None
    return slice(start, stop)


def split_hh(chosen: str, rejected: str) -> TextPair:
    """Split two HH-RLHF dialogues into their shared prompt and two responses."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n)  # last turn marker wholly inside the shared prefix
    if cut < 0:
        return TextPair(prompt="", chosen=chosen, rejected=rejected)
    end = cut + len(ASSISTANT)
    return TextPair(prompt=chosen[:end], chosen=chosen[end:], rejected=rejected[end:])


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _parse_line(obj: Any, where: str, row: int) -> PreferencePair | TextPair:
    if not isinstance(obj, dict):
        raise PairFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    if isinstance(chosen, dict) and isinstance(rejected, dict):
        try:
            return PreferencePair.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise PairFileError(f"{where}: not a valid preference pair ({loc}: {first['msg']})") from None
    if not (isinstance(chosen, str) and isinstance(rejected, str)):
        raise PairFileError(
            f"{where}: expected 'chosen' and 'rejected' (strings, or trajectories as exported by "
            "`rankact feedback export --format pairs`)"
        )
    prompt = obj.get("prompt")
    if prompt is None:
        pair = split_hh(chosen, rejected)
        return pair.model_copy(update={"group": f"row-{row}"})  # HH: every pair its own group
    if not isinstance(prompt, str):
        raise PairFileError(f"{where}: 'prompt' must be a string")
    return TextPair(prompt=prompt, chosen=chosen, rejected=rejected, group=obj.get("group") or prompt)


def read_pairs(path: str | Path, rows: str | slice | None = None) -> list[PreferencePair | TextPair]:
    """Read one pair file; `rows` ('A:B' or a slice) selects lines by 0-based position."""
    path = Path(path)
    if not path.is_file():
        raise PairFileError(f"pair file not found: {path}")
    selected = rows if isinstance(rows, slice) else parse_range(rows)
    try:
        with _open_text(path) as fh:
            lines = [(i, line) for i, line in enumerate(fh) if line.strip()]
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise PairFileError(f"cannot read {path}: {exc}") from None
    pairs: list[PreferencePair | TextPair] = []
    for row, (lineno, line) in enumerate(lines[selected]):
        where = f"{path}:{lineno + 1}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairFileError(f"{where}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise PairFileError(f"{where}: JSON nested too deeply") from None
        pairs.append(_parse_line(obj, where, row))
    if not pairs:
        raise PairFileError(f"no pairs in {path} (range {rows or 'all'})")
    return pairs

