"""The verified-stamp shortcut of the model cache: a hit skips rehashing the weights, but
any change to the weights file (same size or not) forces a full check again."""
import json
import os

from rankact.agent.llm.model_files import file_sha256, is_complete, weights_sha256


def make_cache(folder, payload: bytes):
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(payload)
    (folder / "complete.json").write_text(json.dumps({
        "weights_size": len(payload), "weights_sha256": file_sha256(weights)}))
    return weights


def test_stamp_is_written_after_a_full_check_and_trusted_while_unchanged(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    make_cache(folder, b"w" * 5000)
    assert is_complete(folder) and (folder / "verified.json").is_file()
    calls = []
    monkeypatch.setattr("rankact.agent.llm.model_files.file_sha256", lambda p: calls.append(p) or "x")
    assert is_complete(folder) and calls == []  # no rehash on a hit
    assert weights_sha256(folder) == json.loads((folder / "complete.json").read_text())["weights_sha256"]


def test_same_size_corruption_is_caught_even_with_a_stamp(tmp_path):
    folder = tmp_path / "c"
    weights = make_cache(folder, b"w" * 5000)
    assert is_complete(folder)
    before = weights.stat()
    with open(weights, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00" * 10)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1))  # any mtime change
    assert not is_complete(folder)


def test_stamp_does_not_override_a_different_recorded_hash(tmp_path):
    folder = tmp_path / "c"
    make_cache(folder, b"w" * 5000)
    assert is_complete(folder)
    marker = json.loads((folder / "complete.json").read_text())
    (folder / "complete.json").write_text(json.dumps({**marker, "weights_sha256": "0" * 64}))
    assert not is_complete(folder)
    assert weights_sha256(tmp_path) is None
