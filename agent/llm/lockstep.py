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


class Batch:
    """Rows advanced together through one model: `feed` appends tokens to every row and returns
    each row's next-token logits; `row(i)` gives row i back with everything it was fed."""

    def __init__(self, model, rows: Sequence[Row], pad_id: int, cache_arg: str, device: torch.device):
        self.model, self.pad_id, self.cache_arg, self.device = model, pad_id, cache_arg, device
        self.ids = [list(r.ids) for r in rows]
        width = max((len(r.ids) for r in rows), default=0)
        self.valid = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            self.valid[i, : len(r.ids)] = True
        self.pos = torch.tensor([len(r.ids) for r in rows], dtype=torch.long)
        self.cache = None
        filled = next((r for r in rows if r.keys), None)
        if width and filled is not None:
            from transformers import DynamicCache

            layers = []
            for layer, template in enumerate(filled.keys):
                shape = (len(rows), template.shape[0], width, template.shape[2])
                keys = torch.zeros(shape, dtype=template.dtype, device=device)
                values = torch.zeros(shape, dtype=template.dtype, device=device)
                for i, r in enumerate(rows):
                    if r.ids:
                        keys[i, :, : len(r.ids)] = r.keys[layer]
                        values[i, :, : len(r.ids)] = r.values[layer]
                layers.append((keys, values))
            self.cache = DynamicCache(ddp_cache_data=layers)

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

    def take(self, index: Sequence[int]) -> Batch:
        """A new batch of rows `index` (repeats allowed), copied: it shares nothing with this one."""
        from transformers import DynamicCache

        rows = torch.tensor(list(index), dtype=torch.long)
        on_device = rows.to(self.device)
        out = Batch.__new__(Batch)
        out.model, out.pad_id, out.cache_arg, out.device = self.model, self.pad_id, self.cache_arg, self.device
        out.ids = [list(self.ids[i]) for i in index]
        out.valid = self.valid.index_select(0, rows)
        out.pos = self.pos.index_select(0, rows)
        out.cache = DynamicCache(ddp_cache_data=[(layer.keys.index_select(0, on_device),
                                                  layer.values.index_select(0, on_device))
                                                 for layer in self.cache.layers])
        return out

    def expand(self, counts: Sequence[int]) -> Batch:
        """Row i repeated counts[i] times (option scoring)."""
        return self.take([i for i, c in enumerate(counts) for _ in range(c)])


def _pad_time(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """[rows, heads, T, dim] right-padded with zeros to `width` slots."""
    if tensor.shape[2] == width:
        return tensor
    pad = torch.zeros((*tensor.shape[:2], width - tensor.shape[2], tensor.shape[3]), dtype=tensor.dtype,
                      device=tensor.device)
    return torch.cat([tensor, pad], dim=2)


def join(batch: Batch | None, other: Batch) -> Batch:
    """One batch holding the rows of both (`other`'s after `batch`'s); time padded to match."""
    if batch is None or len(batch) == 0:
        return other
    from transformers import DynamicCache

    width = max(batch.valid.shape[1], other.valid.shape[1])
    layers = [(torch.cat([_pad_time(a.keys, width), _pad_time(b.keys, width)]),
               torch.cat([_pad_time(a.values, width), _pad_time(b.values, width)]))
              for a, b in zip(batch.cache.layers, other.cache.layers, strict=True)]
    out = Batch.__new__(Batch)
    out.model, out.pad_id, out.cache_arg, out.device = batch.model, batch.pad_id, batch.cache_arg, batch.device
    out.ids = batch.ids + other.ids
    valid = [torch.nn.functional.pad(v, (0, width - v.shape[1])) for v in (batch.valid, other.valid)]
    out.valid = torch.cat(valid)
    out.pos = torch.cat([batch.pos, other.pos])
    out.cache = DynamicCache(ddp_cache_data=layers)
    return out


def select(batch: Batch, keep: Sequence[int]) -> Batch | None:
    """The batch restricted to rows `keep` (None when no row is left)."""
    if not keep:
        return None
    return batch if len(keep) == len(batch) else batch.take(keep)
