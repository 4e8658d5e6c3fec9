"""Preference data for the reward model: reading pair files, tokenizing with left truncation of
the prompt, and batching whole groups (all comparisons of one prompt stay in one batch).

Accepted JSONL lines (gzip or not), one pair each:
- `rankact feedback export --format pairs`: an `alignment.preferences.PreferencePair`;
- HH-RLHF: `{chosen, rejected}` dialogues; the shared prefix up to its last "\\n\\nAssistant:"
  is the prompt, the rest of each dialogue the response;
- TRL style: `{prompt, chosen, rejected}` strings (pairs with the same prompt form one group).
"""
from __future__ import annotations

import gzip
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.errors import RankactError
from agent.trajectory import Trajectory
from alignment.preferences import PreferencePair, TextPair, prompt_and_response

ASSISTANT = "\n\nAssistant:"


class PairFileError(RankactError):
    """A pair file is missing or holds a line we cannot read."""


# --------------------------------------------------------------------------- reading


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
        pairs.append(_parse_line(obj, where, row))
    if not pairs:
        raise PairFileError(f"no pairs in {path} (range {rows or 'all'})")
    return pairs


# --------------------------------------------------------------------------- tokenizing


@dataclass
class TokenizedPair:
    group: str
    chosen: list[int]  # prompt + response ids, already truncated
    rejected: list[int]


@dataclass
class TruncationStats:
    sequences: int = 0
    prompt_truncated: int = 0  # prompt cut from the left to fit
    response_truncated: int = 0  # response alone too long: cut from the right, prompt dropped

    def describe(self) -> str:
        return (
            f"{self.sequences} sequences; prompt truncated (left) in {self.prompt_truncated}, "
            f"response truncated (right) in {self.response_truncated}"
        )


def fit(prompt: list[int], response: list[int], max_length: int, stats: TruncationStats) -> list[int]:
    """prompt + response in at most max_length tokens: cut the prompt from the left, never the
    response; a response that alone is too long is cut from the right (and counted apart)."""
    stats.sequences += 1
    if len(prompt) + len(response) <= max_length:
        return prompt + response
    if len(response) >= max_length:
        stats.response_truncated += 1
        return response[:max_length]
    stats.prompt_truncated += 1
    return prompt[len(prompt) + len(response) - max_length :] + response


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def trajectory_ids(trajectory: Trajectory, tokenizer) -> list[int]:
    """The trajectory as the policy saw it: its segments' recorded token ids when every segment
    has them, else the tokenized transcript."""
    if not trajectory.segments:
        raise RankactError(f"trajectory {trajectory.id} has no segments to score")
    if all(s.token_ids is not None for s in trajectory.segments):
        return [t for s in trajectory.segments for t in s.token_ids]
    return _encode(tokenizer, trajectory.transcript())


def _trajectory_parts(trajectory: Trajectory, tokenizer) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids), split where `prompt_and_response` splits the text."""
    segments = trajectory.segments
    cut = 0
    while cut < len(segments) and segments[cut].role == "prompt" and not segments[cut].forced:
        cut += 1
    if segments and all(s.token_ids is not None for s in segments):
        return [t for s in segments[:cut] for t in s.token_ids], [t for s in segments[cut:] for t in s.token_ids]
    prompt, response = prompt_and_response(trajectory)
    return _encode(tokenizer, prompt), _encode(tokenizer, response)


def tokenize_pairs(
    pairs: Sequence[PreferencePair | TextPair], tokenizer, max_length: int
) -> tuple[list[TokenizedPair], TruncationStats]:
    stats = TruncationStats()
    out: list[TokenizedPair] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, PreferencePair):
            if not pair.chosen.segments or not pair.rejected.segments:
                raise RankactError(f"pair {i} ({pair.question_id}): a trajectory has no segments")
            cp, cr = _trajectory_parts(pair.chosen, tokenizer)
            rp, rr = _trajectory_parts(pair.rejected, tokenizer)
            if cp != rp:  # different prompts (e.g. prompt versions): each scored whole
                cp, cr, rp, rr = [], cp + cr, [], rp + rr
            group = pair.question_id
        else:
            cp = rp = _encode(tokenizer, pair.prompt)
            cr, rr = _encode(tokenizer, pair.chosen), _encode(tokenizer, pair.rejected)
            group = pair.group or f"pair-{i}"
        if not cr and not cp:
            raise RankactError(f"pair {i}: empty chosen text")
        if not rr and not rp:
            raise RankactError(f"pair {i}: empty rejected text")
        out.append(TokenizedPair(group, fit(cp, cr, max_length, stats), fit(rp, rr, max_length, stats)))
    return out, stats


# --------------------------------------------------------------------------- batching


def group_pairs(pairs: Sequence[TokenizedPair]) -> list[list[int]]:
    """Indices of pairs, grouped by prompt/question, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(pair.group, []).append(i)
    return list(groups.values())


def make_batches(groups: Sequence[list[int]], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle groups (not pairs) with a seed per epoch and pack them into batches of about
    `batch_size` pairs. A group is never split; one larger than `batch_size` is a batch alone."""
    order = list(range(len(groups)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    for g in order:
        group = groups[g]
        if current and len(current) + len(group) > batch_size:
            batches.append(current)
            current = []
        current = current + list(group)
    if current:
        batches.append(current)
    return batches


@dataclass
class Batch:
    """Unique sequences of a batch (InstructGPT: each response forwarded once, however many
    pairs it is in) plus, per pair, the row of its chosen and rejected sequence and a weight
    so that each group counts once in the loss."""

    sequences: list[list[int]]
    chosen_rows: list[int]
    rejected_rows: list[int]
    weights: list[float]

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


def collate(pairs: Sequence[TokenizedPair], indices: Sequence[int]) -> Batch:
    rows: dict[tuple[int, ...], int] = {}
    sizes: dict[str, int] = {}
    for i in indices:
        sizes[pairs[i].group] = sizes.get(pairs[i].group, 0) + 1

    def row(ids: list[int]) -> int:
        return rows.setdefault(tuple(ids), len(rows))

    chosen = [row(pairs[i].chosen) for i in indices]
    rejected = [row(pairs[i].rejected) for i in indices]
    weights = [1.0 / sizes[pairs[i].group] for i in indices]
    return Batch([list(k) for k in rows], chosen, rejected, weights)


def pad(sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right"):
    """(input_ids, attention_mask) tensors, padded on `side`."""
    import torch

    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if not seq:
            continue
        sl = slice(0, len(seq)) if side == "right" else slice(length - len(seq), length)
        ids[i, sl] = torch.tensor(seq, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask
