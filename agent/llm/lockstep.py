"""Lockstep batched decoding for the transformers backend: many sequences advanced in one
forward pass, each with its own prompt, stop strings, length and seed, and a KV cache per
sequence kept between calls (automatic prefix caching).

Written by hand because `model.generate` batches only prompts that start and stop together,
while an agent's trajectories need per-row stop strings and seeds, option scoring, and caches
that live from one call to the next as rows join and leave (what paged-attention servers do
on GPUs; nothing in transformers does it for us).

Rows. Every sequence fed is kept as a `Row`: its token ids and, per layer, their keys and
values. A call matches each prompt to the stored row that shares its longest prefix (the same
trajectory one call later, or a sibling: K samples of one question share the system prompt
and the question; other questions share the system prompt) and feeds only the rest. Rows
unused for a while are dropped (least recently used first, a bounded count).

A batched forward (`Batch`) stacks the rows' caches, padded on the right to one length with
masked slots; each row's new tokens are left-padded so that its last token is in the last
column; explicit position ids keep each row's positions contiguous. A row therefore sees
exactly the keys, values and positions it would see alone, so batched greedy decoding gives
the sequential result (up to float summation order).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, DynamicLayer


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Row:
    ids: list[int]
    keys: list[torch.Tensor] = field(default_factory=list)  # per layer [heads, len(ids), head_dim]
    values: list[torch.Tensor] = field(default_factory=list)
    used: int = 0

    def prefix(self, n: int) -> Row:
        """The first n tokens (views, no copy)."""
        return Row(self.ids[:n], [k[:, :n] for k in self.keys], [v[:, :n] for v in self.values], self.used)


class RowCache:
    """The rows kept between calls, found by longest shared prefix."""

    def __init__(self, max_rows: int = 64):
        self.max_rows = max_rows
        self.rows: list[Row] = []
        self.clock = 0

    def clear(self) -> None:
        self.rows.clear()

    def start(self, prompts: Sequence[Sequence[int]]) -> list[Row]:
        """For each prompt, the longest stored prefix of it as a `Row` (possibly empty), at most
        len(prompt) - 1 tokens so that at least one token is fed and gives the next logits."""
        self.clock += 1
        out = []
        for prompt in prompts:
            best, length = None, 0
            for row in self.rows:
                n = common_prefix(row.ids, prompt)
                if n > length:
                    best, length = row, n
            length = min(length, len(prompt) - 1)
            if best is None or length <= 0:
                out.append(Row([]))
                continue
            best.used = self.clock
            out.append(best.prefix(length))
        return out

    def keep(self, rows: Sequence[Row]) -> None:
        """Store rows after a call; a stored row that is a prefix of a new one is replaced."""
        for row in rows:
            if not row.ids:
                continue
            row.used = self.clock
            self.rows = [r for r in self.rows if not (len(r.ids) <= len(row.ids) and row.ids[: len(r.ids)] == r.ids)]
            self.rows.append(row)
        if len(self.rows) > self.max_rows:
            self.rows.sort(key=lambda r: r.used)
            del self.rows[: len(self.rows) - self.max_rows]


class SlotLayer(DynamicLayer):
    """One layer's keys and values for a batch, in buffers with spare time slots and spare rows:
    appending a step writes in place, and so does a row joining or leaving (`Batch.join`,
    `Batch.retain`). (transformers' DynamicLayer concatenates, which copies the whole batch's
    cache at every step: ~20% of a batch-8 step at 1000 tokens on this CPU.)"""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int, rows: int | None = None):
        super().__init__()
        self.key_buffer, self.value_buffer, self.length = key_buffer, value_buffer, length
        self.rows = key_buffer.shape[0] if rows is None else rows
        self.device = key_buffer.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys = self.key_buffer[: self.rows, :, : self.length]
        self.values = self.value_buffer[: self.rows, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[2]
        self.reserve(end)
        self.key_buffer[: self.rows, :, self.length : end] = key_states
        self.value_buffer[: self.rows, :, self.length : end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def reserve(self, slots: int) -> None:
        """Room for `slots` time slots: out of spare slots, grow by a quarter (amortised copies)."""
        if slots > self.key_buffer.shape[2]:
            capacity = max(slots, self.key_buffer.shape[2] + max(SPARE_SLOTS, self.key_buffer.shape[2] // 4))
            self.key_buffer = _regrown(self.key_buffer, self.length, capacity)
            self.value_buffer = _regrown(self.value_buffer, self.length, capacity)
            self._views()

    def move_rows(self, moves: Sequence[tuple[int, int]], rows: int) -> None:
        """Copy row `src` into row `dst` for each (src, dst), then keep the first `rows` rows."""
        for src, dst in moves:
            self.key_buffer[dst, :, : self.length] = self.key_buffer[src, :, : self.length]
            self.value_buffer[dst, :, : self.length] = self.value_buffer[src, :, : self.length]
        self.rows = rows
        self._views()

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        self.length = max(0, self.length - abs(tokens_to_remove))
        self._views()


SPARE_SLOTS = 128  # time slots allocated ahead: a decode grows without copying for this many steps


def _regrown(buffer: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    grown = buffer.new_zeros((*buffer.shape[:2], capacity, buffer.shape[3]))
    grown[:, :, :length] = buffer[:, :, :length]
    return grown


@dataclass
class Member:
    """A row as it sits in (or will enter) a batch: keys/values per layer [heads, slots, dim],
    which of the slots hold tokens (masked pads where other rows were fed more), the position
    of its next token, its ids."""

    ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    pos: int

    @classmethod
    def of_row(cls, row: Row) -> Member:
        return cls(list(row.ids), row.keys, row.values, torch.ones(len(row.ids), dtype=torch.bool), len(row.ids))


class Batch:
    """Rows advanced together through one model: `feed` appends tokens to every row and returns
    each row's next-token logits; `row(i)` gives row i back with everything it was fed.

    Every change of membership (`take`, `join`) builds a new batch with one copy of the rows it
    keeps; `feed` itself copies nothing (`SlotLayer`)."""

    def __init__(self, model, rows: Sequence[Row], pad_id: int, cache_arg: str, device: torch.device):
        self._assemble(model, pad_id, cache_arg, device, [Member.of_row(r) for r in rows])

    def _assemble(self, model, pad_id: int, cache_arg: str, device, members: Sequence[Member],
                  spare_rows: int = 0) -> None:
        self.model, self.pad_id, self.cache_arg, self.device = model, pad_id, cache_arg, device
        self.ids = [list(m.ids) for m in members]
        width = max((len(m.valid) for m in members), default=0)
        self.valid = torch.zeros((len(members), width), dtype=torch.bool)
        for i, m in enumerate(members):
            self.valid[i, : len(m.valid)] = m.valid
        self.pos = torch.tensor([m.pos for m in members], dtype=torch.long)
        self.cache = None
        filled = next((m for m in members if m.keys), None)
        if not width or filled is None:
            return
        layers = []
        for layer, template in enumerate(filled.keys):
            # Zeros, not empty: a masked slot gets no attention weight, but 0 * NaN would still be NaN.
            shape = (len(members) + spare_rows, template.shape[0], width + SPARE_SLOTS, template.shape[2])
            keys = torch.zeros(shape, dtype=template.dtype, device=device)
            values = torch.zeros(shape, dtype=template.dtype, device=device)
            for i, m in enumerate(members):
                if m.keys:
                    keys[i, :, : m.keys[layer].shape[1]] = m.keys[layer]
                    values[i, :, : m.values[layer].shape[1]] = m.values[layer]
            layers.append(SlotLayer(keys, values, width, rows=len(members)))
        self.cache = Cache(layers=layers)

    def retain(self, keep: Sequence[int]) -> list[int]:
        """Keep rows `keep` (distinct) and drop the rest, in place: each dropped row's place among
        the first len(keep) is filled by a kept row from further on, so only those rows are copied
        (a full `take` copies every row). Returns, for each row now, its index before."""
        if len(set(keep)) != len(keep) or any(not 0 <= i < len(self) for i in keep):
            raise ValueError(f"retain needs distinct rows of the batch, got {list(keep)}")
        n, kept = len(keep), set(keep)
        holes = [i for i in range(n) if i not in kept]
        moves = list(zip([i for i in keep if i >= n], holes, strict=True))
        order = list(range(n))
        for src, dst in moves:
            order[dst] = src
        self.ids = [self.ids[i] for i in order]
        self.valid = self.valid[order]
        self.pos = self.pos[order]
        if self.cache is not None:
            for layer in self.cache.layers:
                layer.move_rows(moves, n)
        return order

    def join(self, members: Sequence[Member]) -> bool:
        """Append `members` (rows after prefill, `Member.of_row`) in place where the buffers have
        spare rows; False, changing nothing, where they have not (then assemble a new batch).
        Rows shorter than the batch get masked slots at their end, as in `assemble_batch`; a longer
        one widens the batch, masked for the rows already in it."""
        if not members:
            return True
        if self.cache is None or any(not m.keys for m in members):
            return False
        layers = self.cache.layers
        if len(self) + len(members) > layers[0].key_buffer.shape[0]:
            return False
        width = max(self.valid.shape[1], *(len(m.valid) for m in members))
        start = len(self)
        for layer_index, layer in enumerate(layers):
            layer.reserve(width)
            for offset, m in enumerate(members):
                layer.key_buffer[start + offset, :, : m.keys[layer_index].shape[1]] = m.keys[layer_index]
                layer.value_buffer[start + offset, :, : m.values[layer_index].shape[1]] = m.values[layer_index]
            layer.length = width
            layer.move_rows((), start + len(members))
        valid = torch.zeros((start + len(members), width), dtype=torch.bool)
        valid[:start, : self.valid.shape[1]] = self.valid
        for offset, m in enumerate(members):
            valid[start + offset, : len(m.valid)] = m.valid
        self.valid = valid
        self.ids += [list(m.ids) for m in members]
        self.pos = torch.cat([self.pos, torch.tensor([m.pos for m in members], dtype=torch.long)])
        return True

    def __len__(self) -> int:
        return len(self.ids)

    def feed(self, seqs: Sequence[Sequence[int]], *, all_logits: bool = False) -> torch.Tensor:
        """Append seqs[i] to row i (an empty seq feeds a masked pad). Returns the logits after
        each row's last token, [rows, vocab] (or [rows, width, vocab] with `all_logits`)."""
        width = max(1, max(len(s) for s in seqs))
        rows = len(seqs)
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        new_valid = torch.zeros((rows, width), dtype=torch.bool)
        positions = self.pos[:, None].expand(rows, width).clone()
        for i, seq in enumerate(seqs):
            if seq:
                ids[i, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
                new_valid[i, width - len(seq):] = True
                positions[i, width - len(seq):] = self.pos[i] + torch.arange(len(seq))
        mask = torch.cat([self.valid, new_valid], dim=1)
        kwargs = {} if all_logits else {"logits_to_keep": 1}
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.long().to(self.device),
                         position_ids=positions.to(self.device), use_cache=True,
                         **{self.cache_arg: self.cache}, **kwargs)
        cache = getattr(out, "cache", None)
        self.cache = cache if cache is not None else out.past_key_values
        self.valid = mask
        for i, seq in enumerate(seqs):
            self.ids[i].extend(seq)
        self.pos += new_valid.sum(dim=1)
        return out.logits if all_logits else out.logits[:, -1]

    def row(self, i: int) -> Row:
        """Row i with its valid slots only (a copy: the batch's tensors can be dropped)."""
        slots = self.valid[i].nonzero().squeeze(1).to(self.device)
        keys = [layer.keys[i].index_select(1, slots) for layer in self.cache.layers]
        values = [layer.values[i].index_select(1, slots) for layer in self.cache.layers]
        return Row(list(self.ids[i]), keys, values)

    def member(self, i: int) -> Member:
        """Row i as it sits here (views, slots and padding included), to enter another batch."""
        layers = self.cache.layers if self.cache is not None else []
        return Member(self.ids[i], [layer.keys[i] for layer in layers], [layer.values[i] for layer in layers],
                       self.valid[i], int(self.pos[i]))

    def take(self, index: Sequence[int]) -> Batch:
        """A new batch of rows `index` (repeats allowed), copied: it shares nothing with this one."""
        return assemble_batch(self.model, self.pad_id, self.cache_arg, self.device, [self.member(i) for i in index])

    def expand(self, counts: Sequence[int]) -> Batch:
        """Row i repeated counts[i] times (option scoring)."""
        return self.take([i for i, c in enumerate(counts) for _ in range(c)])


def assemble_batch(model, pad_id: int, cache_arg: str, device, members: Sequence[Member],
                   spare_rows: int = 0) -> Batch:
    """A batch of `members` (rows of other batches, or `Member.of_row`): one copy of their
    keys and values, with room for `spare_rows` more to `join` without a copy."""
    out = Batch.__new__(Batch)
    out._assemble(model, pad_id, cache_arg, device, members, spare_rows)
    return out
