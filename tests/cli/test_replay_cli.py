"""`rankact align replay`: the starting policy's sampled replies, plus written refusals of
harmful DEV requests when asked, in one file a trainer replays; bad sets are one-line errors."""
from __future__ import annotations

import pytest

from rankact.alignment.feedback.demonstrations.refusal import AUTHOR
from rankact.alignment.training.replay import read_replay


def test_replay_file_holds_sampled_replies_and_written_refusals(tiny_model_dir, shared_data, tmp_path, run_cli):
    out = tmp_path / "replay.jsonl"
    code, said, _ = run_cli(["align", "replay", "benign:dev", "--limit", "2", "--refusals", "advbench:dev",
                             "--refusal-limit", "3", "--model", str(tiny_model_dir), "--out", str(out),
                             "--data", str(shared_data)])
    assert code == 0
    examples = read_replay(out)
    assert [(e.source, e.author) for e in examples] == [
        ("benign-0", "policy"), ("benign-1", "policy"),
        ("advbench-0", AUTHOR), ("advbench-1", AUTHOR), ("advbench-2", AUTHOR)]
    assert "benign 2" in said and "advbench written refusals 3" in said


@pytest.mark.parametrize("refusals", ["benign:dev", "advbench:test"])
def test_refusals_of_harmless_or_test_requests_are_refused(tiny_model_dir, shared_data, tmp_path, run_cli, refusals):
    code, _, err = run_cli(["align", "replay", "nq:dev", "--refusals", refusals, "--model", str(tiny_model_dir),
                            "--out", str(tmp_path / "r.jsonl"), "--data", str(shared_data)])
    assert code == 2 and "Traceback" not in err and ("harmful requests" in err or "DEV" in err)
    assert not (tmp_path / "r.jsonl").exists()
