"""A Hugging Face model folder converted once to CTranslate2 and cached.

`TransformersConverter(...).convert(quantization="int8")` takes ~10 s for SmolLM2-135M,
so the result is kept under `cache_root()/ct2/` in a folder named by a fingerprint of
the source: the full sha256 of its weights (the recorded one for folders model_files
converted, else hashed here: ~0.4 s per 500 MB, so a policy checkpoint retrained in place
is never served stale weights) plus its config and tokenizer files. As in model_files,
the conversion is written aside, the `complete.json` marker (size and hash of model.bin)
is written last, and a folder whose marker or weights do not check out is rebuilt.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm.model_files import cache_root, file_sha256, is_complete, publish, weights_sha256

CT2_WEIGHTS = "model.bin"
QUANTIZATIONS = ("int8", "int8_float32", "float32")
# Small files that change what the converted folder holds (config.json: the architecture;
# the tokenizer files: vocabulary.json).
_KEY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json")


def source_key(folder: Path) -> str:
    """Fingerprint of a Hugging Face folder's weights, config and tokenizer."""
    digest = hashlib.sha256()
    if recorded := weights_sha256(folder):
        digest.update(recorded.encode())
    else:
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        for path in weights:
            digest.update(f"{path.name}:{file_sha256(path)}".encode())
    for name in _KEY_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    return digest.hexdigest()[:20]


def ct2_model_dir(source: Path, quantization: str = "int8", cache_dir: Path | None = None) -> tuple[Path, float]:
    """(converted folder, seconds spent converting: 0.0 on a cache hit)."""
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown CTranslate2 quantization {quantization!r}; use one of {QUANTIZATIONS}")
    source = Path(source)
    root = Path(cache_dir) if cache_dir else cache_root() / "ct2"
    target = root / f"{source.name}-{source_key(source)}-{quantization}"
    if is_complete(target, CT2_WEIGHTS):
        return target, 0.0
    start = time.perf_counter()
    _convert(source, target, quantization)
    return target, time.perf_counter() - start


def _convert(source: Path, target: Path, quantization: str) -> None:
    import ctranslate2

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write aside, then rename: a crash mid-write never leaves a folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    out = staging / "model"
    try:
        try:
            ctranslate2.converters.TransformersConverter(str(source)).convert(str(out), quantization=quantization)
        except Exception as exc:  # the converter raises ValueError/KeyError/... for unsupported models
            raise ModelLoadError(f"CTranslate2 cannot convert {source}: {exc.__class__.__name__}: {exc}") from exc
        publish(out, target, CT2_WEIGHTS, source=str(source), quantization=quantization,
                ctranslate2=ctranslate2.__version__)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
