"""The reference policy's log-probs, computed once per training run and cached on disk.

DPO and GRPO both compare the policy with the policy they started from. Its log-probs never
change during a run, so they are computed before the first update and saved in the output
folder under a fingerprint of the data and the base model: a resumed run reads them back,
and a run on other data or another model recomputes them rather than trusting a stale file.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from rankact.alignment.training.logprobs import token_logprobs
from rankact.alignment.training.policy import is_peft, load_policy
from rankact.alignment.training.runtime import progress
from rankact.alignment.training.tokenize import Encoded, collate

log = logging.getLogger(__name__)


def fingerprint(base: Path, max_length: int, rows: Iterable[list]) -> str:
    """A hash of the base model's path, the length limit and each row of training data (JSON)."""
    digest = hashlib.sha256(f"{base}|{max_length}".encode())
    for row in rows:
        digest.update(json.dumps(row).encode())
    return digest.hexdigest()


def cached_reference(path: Path, digest: str, model, base: str | None, resuming: bool, device,
                     compute: Callable[[Any], Any], is_main: bool) -> Any:
    """`compute(reference_model)`, or what an earlier run with the same `digest` saved at `path`.

    The reference is the starting policy: with LoRA, the same model with its adapters off (no
    second copy); on a resumed full fine-tune, whose trained weights are already loaded, a fresh
    copy of `base`; otherwise the model itself, before its first update."""
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == digest:
            return saved["logps"]
        log.warning("%s was computed for other data or another model; recomputing", path)
    if is_peft(model):
        with model.disable_adapter():  # adapters off = the base model = the reference
            table = compute(model)
    elif resuming:
        reference, _ = load_policy(base)
        table = compute(reference.to(device))
        del reference
    else:
        table = compute(model)
    if is_main:
        torch.save({"fingerprint": digest, "logps": table}, path)
    return table


@torch.no_grad()
def sample_token_logps(model, samples: list[Encoded], pad_id: int, device, chunk_size: int | None,
                       batch_size: int = 2, show: bool = False) -> list[torch.Tensor]:
    """Per sample, the log-prob of each of its tokens (0 where not trainable), on the CPU."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    bar = progress(len(samples), "reference log-probs", show)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collate(chunk, pad_id).to(device)
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.trainable_mask,
                                 chunk_size=chunk_size)
        out.extend(logp[i, : len(s)].cpu() for i, s in enumerate(chunk))
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return out
