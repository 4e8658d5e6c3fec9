import json

import pytest

from alignment.cli.main import main


@pytest.mark.slow
def test_demo_quick_runs_every_stage(tiny_model_dir, tmp_path, capsys, monkeypatch):
    # A random tiny model answers nothing right, so the real scoring ties every trajectory and
    # there would be no pairs; this plumbing test ranks shorter answers first instead.
    monkeypatch.setattr("alignment.feedback.simulated.score", lambda t, gold: (-len(t.final_answer or "x" * 999),))
    out = tmp_path / "run"
    main(["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "SIMULATED" in printed and "[9/9]" in printed and "left in all" in printed
    summary = json.loads((out / "demo_summary.json").read_text())
    assert [r["label"] for r in summary["reports"]] == ["before", "after DPO"]
    assert all(r["n"] == 2 for r in summary["reports"])
    assert not summary["skipped"]
    assert (out / "store.db").is_file() and (out / "dpo" / "config.json").is_file()
    pairs = (out / "pairs.jsonl").read_text().splitlines()
    assert pairs and all(json.loads(line)["source"] == "simulated" for line in pairs)
    assert (out / "reward" / "reward_config.json").is_file()
    assert set(summary["reward_scores"]) == {"before", "after DPO"}
    assert all(isinstance(v, float) for v in summary["reward_scores"].values())
    assert "mean normalized score" in printed


def test_demo_without_pairs_stops_with_a_clear_error(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("alignment.feedback.simulated.score", lambda t, gold: (0,))  # everything ties
    monkeypatch.setattr("alignment.demo.Demo.eval_before", lambda self: "skipped in this test")
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage 6 (export the rankings as preference pairs) failed" in err and "no preference pairs" in err


def test_demo_stage_failure_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage 1 (load the model) failed" in err and "not found" in err and "Traceback" not in err


def test_demo_config_and_bundled_data():
    from alignment.demo import DemoConfig
    from alignment.tasks.bundled import demo_tasks

    quick = DemoConfig.quick_config(samples=3)
    assert quick.samples == 3 and quick.quick and quick.train_questions == 2
    train, heldout = demo_tasks()
    assert DemoConfig().train_questions <= len(train) and DemoConfig().heldout_questions <= len(heldout)
    with pytest.raises(ValueError):
        DemoConfig(samples=1)


def test_demo_unexpected_failure_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("alignment.demo.Demo.load_model", lambda self: "no model needed")
    monkeypatch.setattr("alignment.demo.Demo.index_corpus", boom)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage 2 (index the bundled corpus) failed" in err and "RuntimeError: disk on fire" in err
    assert "Traceback" not in err
    assert "disk on fire" in (tmp_path / "r" / "error.txt").read_text()
