"""A LoRA adapter from a trained policy: the difference to its base, factored by SVD.

Rounds merge each round's LoRA into the next policy, so after R rounds the policy differs
from the base by a sum of R rank-r updates per linear layer. To ship that as a few-MB
adapter (PEFT's format: `PeftModel.from_pretrained` and rankact's own merge both load it),
each layer's difference W_tuned - W_base is factored with a truncated SVD,
B = U_k sqrt(S_k), A = sqrt(S_k) V_k^T. With rank >= R * r the factorization is exact up to
float error; a smaller rank keeps the largest directions, and the report says how much of
each layer's update (Frobenius norm) the adapter keeps, so the trade is measured, not guessed.
Only linear layers can be carried: if anything else changed (embeddings, norms), export
refuses rather than ship an adapter that is silently not the trained policy.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from rankact.alignment.errors import CommandError

WEIGHTS = "model.safetensors"


class AdapterReport(BaseModel):
    out: Path
    rank: int
    layers: int
    parameters: int
    bytes: int
    kept_min: float  # the smallest share of one layer's update norm the adapter keeps
    kept_mean: float


def factor(delta, rank: int):
    """(A, B, share of ||delta||_F kept) with B @ A the best rank-`rank` approximation."""
    import torch

    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    b, a = u[:, :k] * root, root[:, None] * vh[:k]
    total = float(s.square().sum())
    kept = float(s[:k].square().sum()) / total if total else 1.0
    return a.float(), b.float(), kept**0.5


def _state(folder: Path) -> dict:
    from safetensors.torch import load_file

    path = folder / WEIGHTS
    if not path.is_file():
        raise CommandError(f"not a model folder with {WEIGHTS}: {folder}")
    return load_file(str(path))


def export_adapter(base: Path, tuned: Path, out: Path, rank: int = 32, *, dtype: str = "float16",
                   atol: float = 0.0) -> AdapterReport:
    """Write `out/adapter_config.json` and `out/adapter_model.safetensors` such that base + adapter
    reproduces `tuned` in its linear layers (exactly when `rank` covers the update's rank)."""
    import torch
    from safetensors.torch import save_file

    if rank < 1:
        raise CommandError("--rank must be at least 1")
    base_state, tuned_state = _state(Path(base)), _state(Path(tuned))
    if set(base_state) != set(tuned_state):
        raise CommandError("the two models do not have the same weights; export needs the policy's own base")
    tensors: dict[str, torch.Tensor] = {}
    modules: set[str] = set()
    kept: list[float] = []
    for name in sorted(base_state):
        old, new = base_state[name], tuned_state[name]
        if old.shape != new.shape:
            raise CommandError(f"{name} has another shape in the tuned model; not the same architecture")
        delta = new.float() - old.float()
        if float(delta.abs().max()) <= atol:
            continue
        linear = name.endswith(".weight") and old.dim() == 2 and "embed" not in name and "lm_head" not in name
        if not linear:
            raise CommandError(f"{name} changed in training, which a LoRA adapter cannot carry; ship the whole model")
        a, b, share = factor(delta, rank)
        layer = "base_model.model." + name.removesuffix(".weight")
        tensors[f"{layer}.lora_A.weight"] = a.to(getattr(torch, dtype)).contiguous()
        tensors[f"{layer}.lora_B.weight"] = b.to(getattr(torch, dtype)).contiguous()
        modules.add(name.removesuffix(".weight").rsplit(".", 1)[-1])
        kept.append(share)
    if not tensors:
        raise CommandError("the tuned model equals its base: nothing to export")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # lora_alpha == r makes the merge scale 1: the factors carry the update as it is.
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": rank, "lora_dropout": 0.0,
              "target_modules": sorted(modules), "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
              "inference_mode": True, "modules_to_save": None, "base_model_name_or_path": None}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=1) + "\n")
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    return AdapterReport(out=out, rank=rank, layers=len(kept), parameters=sum(t.numel() for t in tensors.values()),
                         bytes=(out / "adapter_model.safetensors").stat().st_size, kept_min=min(kept),
                         kept_mean=sum(kept) / len(kept))
