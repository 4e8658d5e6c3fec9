"""`rankact align sft|dpo|grpo|ppo`: a run from the command line leaves a loadable policy folder;
bad input is one `error:` line with exit code 2, never a traceback."""
from __future__ import annotations

import pytest

from rankact.agent.trajectory import ModelRef, Segment, Trajectory
from rankact.alignment.feedback.preferences.pairs import PreferencePair
from rankact.cli.main import main


def _traj(answer: int) -> Trajectory:
    return Trajectory(question="q", model=ModelRef(backend="t", name="t"), prompt_version="v", segments=[
        Segment(role="prompt", text="p", token_ids=[1, 504, 3062, 28]),
        Segment(role="generated", text="a", token_ids=[answer, answer + 1]),
    ])


def _run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_sft_then_dpo_from_its_output(tmp_path, tiny_model_dir, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(PreferencePair(question_id=f"q{i}", question="q", chosen=_traj(2000 + i),
                                            rejected=_traj(4000 + i)).model_dump_json() + "\n" for i in range(2)))
    sft_out = tmp_path / "sft"
    assert _run(["align", "sft", "--pairs", str(pairs), "--out", str(sft_out), "--base", str(tiny_model_dir),
                 "--max-steps", "1"]) == 0
    assert "Policy saved to" in capsys.readouterr().out
    dpo_out = tmp_path / "dpo"
    # DPO warm-started from the SFT policy folder, as the loop intends.
    assert _run(["align", "dpo", "--pairs", str(pairs), "--out", str(dpo_out), "--base", str(sft_out),
                 "--beta", "0.2", "--max-steps", "1", "--lora"]) == 0
    from rankact.agent.llm.loading import load_llm

    assert load_llm(str(dpo_out)) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["align", "dpo", "--out", "OUT"], "exactly one of"),
        (["align", "sft", "--out", "OUT", "--pairs", "missing.jsonl"], "not found"),
        (["align", "dpo", "--out", "OUT", "--pairs", "PAIRS", "--loss", "hinge"], "'--loss'"),
        (["align", "ppo", "--out", "OUT", "--tasks", "PAIRS", "--reward", "nowhere"], "reward model folder"),
        (["align", "grpo", "--out", "OUT", "--db", "sqlite:///nowhere/store.db"], "nowhere"),
        (["align", "grpo", "--out", "OUT", "--db", "sqlite:///DIR/empty.db", "--signal", "people"], "'--signal'"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "pairs.jsonl").write_text("")
    args = [a.replace("OUT", str(tmp_path / "o")).replace("PAIRS", str(tmp_path / "pairs.jsonl"))
            .replace("DIR", str(tmp_path)) for a in args]
    assert _run(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_grpo_trains_from_the_stores_rankings(tmp_path, tiny_model_dir, capsys):
    from rankact.alignment.feedback.records.rankings import Ranking
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with TrajectoryStore(url) as store:
        good, bad, other = _traj(2000), _traj(4000), _traj(6000)
        qid = store.add(good, gold=["x"])
        store.add(bad, question_id=qid)
        store.add(other, question_id=qid)
        store.submit_ranking(Ranking(question_id=qid, annotator="ann", order=[[good.id], [bad.id, other.id]]))
    out = tmp_path / "grpo"
    assert _run(["align", "grpo", "--db", url, "--out", str(out), "--base", str(tiny_model_dir),
                 "--max-steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert "3 trajectories with a signal from 1 groups" in printed and "Policy saved to" in printed
