import json

import pytest

from rankact.cli.main import main


@pytest.mark.slow
def test_demo_quick_runs_every_stage(tiny_model_dir, tmp_path, capsys, monkeypatch):
    # A random tiny model answers nothing right, so the real scoring ties every trajectory and
    # there would be nothing to learn; this plumbing test ranks shorter answers first instead.
    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score", lambda t, gold, criteria="process": (-len(t.final_answer or "x" * 999),))
    out = tmp_path / "run"
    main(["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "SIMULATED" in printed and "[6/6]" in printed and "left in all" in printed
    assert "McNemar" in printed and "paired against before" in printed
    summary = json.loads((out / "demo_summary.json").read_text())
    assert [r["label"] for r in summary["reports"]] == ["before", f"after 1 round of {summary['config']['method']}"]
    assert all(r["n"] == 2 and "success" in r["intervals"] for r in summary["reports"])
    assert {d["metric"] for d in summary["paired"]} == {"success", "exact match", "token F1"}
    assert not summary["skipped"]
    assert (out / "round-1" / "store.db").is_file() and (out / "round-1" / "policy" / "config.json").is_file()
    # held-out questions are DEV positions 100.., training ones 0..: never the same question
    heldout = {r["question"] for r in summary["reports"][0]["results"]}
    from rankact.alignment.tasks.datasets import arith_tasks

    assert heldout == {t.question for t in arith_tasks("dev")[100:102]}


def test_demo_with_nothing_to_learn_stops_with_a_clear_error(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score", lambda t, gold, criteria="process": (0,))  # everything ties
    monkeypatch.setattr("rankact.alignment.demo.Demo.eval_before", lambda self: "skipped in this test")
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--model", str(tiny_model_dir), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage 5 (round 1: train the policy from the rankings" in err and "nothing to learn" in err


def test_demo_stage_failure_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage 1 (load the model) failed" in err and "not found" in err and "Traceback" not in err


def test_demo_config_sizes():
    from rankact.alignment.demo import HELDOUT_START, DemoConfig

    quick = DemoConfig.quick_config(samples=3)
    assert quick.samples == 3 and quick.quick and quick.train_questions == 2
    full = DemoConfig()
    assert full.heldout_questions >= 20 and full.train_questions <= HELDOUT_START  # no overlap
    with pytest.raises(ValueError):
        DemoConfig(samples=1)


def test_demo_unexpected_failure_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("rankact.alignment.demo.Demo.load_model", lambda self: "no model needed")
    monkeypatch.setattr("rankact.alignment.demo.Demo.eval_before", boom)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage 2 (evaluate the agent before training" in err and "RuntimeError: disk on fire" in err
    assert "Traceback" not in err
    assert "disk on fire" in (tmp_path / "r" / "error.txt").read_text()
