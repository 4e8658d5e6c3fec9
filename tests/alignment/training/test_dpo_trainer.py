"""DPO on a tiny random Llama: first loss is ln 2 (policy == reference), training raises the
chosen-vs-rejected margin, the output folder is a loadable model, resume reuses the cached
reference log-probs and continues from its step."""
from __future__ import annotations

import json
import math

import pytest
from trajectory_factory import two_step_trajectory

from rankact.alignment.feedback.preferences.pairs import PreferencePair
from rankact.alignment.training import dpo as dpo_module
from rankact.alignment.training.dpo import DPOConfig, train_dpo


def make_pairs(n: int = 4) -> list[PreferencePair]:
    return [
        PreferencePair(
            question_id=f"q{i}",
            question="q",
            chosen=two_step_trajectory([2000 + i, 2100], [300, 301 + i]),
            rejected=two_step_trajectory([4000 + i, 4100], [500, 501]),
        )
        for i in range(n)
    ]


def test_dpo_trains_saves_and_resumes(tmp_path, tiny_model_dir, monkeypatch):
    out = tmp_path / "dpo"
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("".join(p.model_dump_json() + "\n" for p in make_pairs()))
    config = DPOConfig(out_dir=out, pairs=pairs_file, base=str(tiny_model_dir), learning_rate=5e-3,
                       batch_size=2, epochs=3, max_steps=2, seed=0, show_progress=False)
    result = train_dpo(config)
    assert result.steps == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-4)
    assert records[-1]["margin"] > records[0]["margin"]
    assert (out / dpo_module.REFERENCE_FILE).is_file() and (out / "metrics.png").is_file()

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out) is not None

    # Resume: continues at step 2 and must not recompute the reference.
    def boom(*args, **kwargs):
        raise AssertionError("reference recomputed on resume")

    monkeypatch.setattr(dpo_module, "reference_logps", boom)
    resumed = train_dpo(config.model_copy(update={"resume": True, "max_steps": 3}))
    assert resumed.steps == 3
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_dpo_rejects_bad_sources(tmp_path, tiny_model_dir):
    from rankact.agent.errors import RankactError

    with pytest.raises(RankactError):
        train_dpo(DPOConfig(out_dir=tmp_path / "x", base=str(tiny_model_dir)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(RankactError):
        train_dpo(DPOConfig(out_dir=tmp_path / "y", pairs=bad, base=str(tiny_model_dir)))


def test_pairs_and_best_of_k_from_a_store(tmp_path):
    from rankact.alignment.feedback.preferences.pair_source import load_pair_source
    from rankact.alignment.feedback.records.rankings import Ranking
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
    from rankact.alignment.training.sft import best_of_pairs

    url = f"sqlite:///{tmp_path / 'store.db'}"
    good, mid, bad = two_step_trajectory([2000, 1], [300]), two_step_trajectory([3000, 1], [300]), two_step_trajectory([4000, 1], [300])
    with TrajectoryStore(url) as store:
        qid = store.add(good)
        store.add(mid, qid)
        store.add(bad, qid)
        store.submit_ranking(Ranking(question_id=qid, annotator="ann", order=[[good.id], [mid.id, bad.id]]))
    pairs = load_pair_source(None, url)
    assert {(p.chosen.id, p.rejected.id) for p in pairs} == {(good.id, mid.id), (good.id, bad.id)}
    assert [t.id for t in best_of_pairs(pairs)] == [good.id]
