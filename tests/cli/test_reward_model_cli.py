"""RewardModel scoring invariances, trajectory rendering, and the CLI on the tiny model."""
from __future__ import annotations

import json

import pytest
import torch

from rankact.agent.trajectory import ModelRef, Segment, Trajectory
from rankact.alignment.training.reward.model import RewardModel, last_token_index


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> RewardModel:
    torch.manual_seed(0)
    return RewardModel.from_base(tiny_model_dir, max_length=64).eval()


SEQS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]


def pad(sequences, pad_id, side="right"):
    """(input_ids, attention_mask) padded on `side`: left padding checks the model reads the
    same token with the same positions whichever side the padding is on."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        cols = slice(0, len(seq)) if side == "right" else slice(length - len(seq), length)
        ids[i, cols], mask[i, cols] = torch.tensor(seq), 1
    return ids, mask


def test_last_token_index_is_the_last_real_token_on_either_side():
    _, right = pad([[1, 2, 3], [4]], 0, "right")
    _, left = pad([[1, 2, 3], [4]], 0, "left")
    assert last_token_index(right).tolist() == [2, 0]
    assert last_token_index(left).tolist() == [2, 2]


def test_scores_do_not_depend_on_padding_side_or_batch_composition(model):
    with torch.no_grad():
        right = model(*pad(SEQS, model.pad_id, "right"))
        left = model(*pad(SEQS, model.pad_id, "left"))
        alone = torch.stack([model(*pad([s], model.pad_id))[0] for s in SEQS])
        shuffled = model(*pad([SEQS[2], SEQS[0], SEQS[3], SEQS[1]], model.pad_id, "left"))
    assert torch.allclose(right, left, atol=1e-5)
    assert torch.allclose(right, alone, atol=1e-5)
    assert torch.allclose(shuffled, alone[[2, 0, 3, 1]], atol=1e-5)
    assert len(set(alone.tolist())) == len(SEQS)  # the scores do depend on the input
    # score_ids batches by length; any batch size gives the same numbers.
    assert model.score_ids(SEQS, batch_size=1) == pytest.approx(model.score_ids(SEQS, batch_size=3), abs=1e-5)


def test_score_trajectory_uses_the_recorded_token_ids_else_each_segment_tokenized(model):
    segments = [Segment(role="prompt", text="Q: hi\n", token_ids=[50, 51]),
                Segment(role="generated", text="Final Answer: yo", token_ids=[60, 61, 62])]
    traj = Trajectory(question="hi", model=ModelRef(backend="local", name="t"), prompt_version="v", segments=segments)
    assert model.score_trajectory(traj) == pytest.approx(model.score_ids([[50, 51, 60, 61, 62]])[0], abs=1e-6)
    text_only = traj.model_copy(update={"segments": [s.model_copy(update={"token_ids": None}) for s in segments]})
    encode = model.tokenizer.encode
    per_segment = encode("Q: hi\n", add_special_tokens=False) + encode("Final Answer: yo", add_special_tokens=False)
    assert model.score_trajectory(text_only) == pytest.approx(model.score_ids([per_segment])[0], abs=1e-6)


def test_cli_train_eval_score_and_user_errors(tiny_model_dir, tmp_path, run_cli):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"chosen": f"\n\nHuman: q{i}\n\nAssistant: Glad to help.", "rejected": f"\n\nHuman: q{i}\n\nAssistant: No!"}
            for i in range(8)]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "rm"
    code, stdout, err = run_cli(["align", "reward", "--pairs", str(pairs), "--out", str(out), "--base", str(tiny_model_dir),
                                 "--max-steps", "2", "--max-length", "32", "--batch-size", "4", "--lr", "1e-3",
                                 "--range", "0:6"])
    assert code == 0, err
    assert "6 pairs in 6 groups" in stdout and "2 steps" in stdout and "truncation" in stdout
    assert (out / "reward_config.json").is_file()

    code, stdout, err = run_cli(["align", "reward-eval", str(out), "--pairs", str(pairs), "--range", "6:8", "--json"])
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["pairs"] == 2 and 0.0 <= result["ci_low"] <= result["accuracy"] <= result["ci_high"] <= 1.0

    traj = Trajectory(question="q", model=ModelRef(backend="local", name="t"), prompt_version="v",
                      segments=[Segment(role="prompt", text="\n\nHuman: q\n\nAssistant:"),
                                Segment(role="generated", text=" Glad to help.")])
    traj_file = tmp_path / "t.json"
    traj_file.write_text(traj.to_json())
    code, stdout, err = run_cli(["score", str(out), str(traj_file)])
    assert code == 0, err
    raw = float(stdout.split("raw")[1].split()[0])
    normalized = float(stdout.split("normalized")[1].split()[0])
    reloaded = RewardModel.load(out)
    assert raw == pytest.approx(reloaded.score_trajectory(traj), abs=1e-4)
    assert normalized == pytest.approx((raw - reloaded.info.mean) / reloaded.info.std, abs=1e-4)

    # User errors: one line, exit 2, no traceback.
    pairs.write_text(json.dumps(rows[0]) + "\n" + "oops\n")
    code, _, err = run_cli(["align", "reward", "--pairs", str(pairs), "--out", str(tmp_path / "x"),
                            "--base", str(tiny_model_dir)])
    assert code == 2 and "pairs.jsonl:2" in err and "Traceback" not in err
    code, _, err = run_cli(["align", "reward-eval", str(tmp_path), "--pairs", str(traj_file)])
    assert code == 2 and "error:" in err
    code, _, err = run_cli(["score", str(tmp_path), str(traj_file)])
    assert code == 2 and "not a reward model" in err
    code, _, err = run_cli(["score", str(out), str(tmp_path / "none.json")])
    assert code == 2 and "not found" in err
