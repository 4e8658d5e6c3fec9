"""Best-of-K SFT: picks each question's never-rejected trajectories, trains NLL on generated
tokens only (loss falls on them), and leaves a loadable model folder."""
from __future__ import annotations

import json

import torch
from trajectory_factory import two_step_trajectory

from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.training.sft import SFTConfig, best_of_pairs, train_sft


def test_best_of_pairs_picks_never_rejected():
    a, b, c = two_step_trajectory([10], [1]), two_step_trajectory([11], [1]), two_step_trajectory([12], [1])
    d = two_step_trajectory([13], [1])
    pairs = [
        PreferencePair(question_id="q1", question="q", chosen=a, rejected=b),
        PreferencePair(question_id="q1", question="q", chosen=a, rejected=c),
        PreferencePair(question_id="q1", question="q", chosen=b, rejected=c),
        PreferencePair(question_id="q2", question="q", chosen=d, rejected=a),
    ]
    assert {t.id for t in best_of_pairs(pairs)} == {a.id, d.id}
    text = [TextPair(prompt="p", chosen="x", rejected="y"), TextPair(prompt="p", chosen="y", rejected="z")]
    assert best_of_pairs(text) == [("p", "x")]


def test_sft_lowers_nll_of_best_and_ignores_observations(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    best = [two_step_trajectory([2000, 2001], [300, 301]), two_step_trajectory([2002, 2003], [300, 302])]
    out = tmp_path / "sft"
    result = train_sft(SFTConfig(out_dir=out, base=str(tiny_model_dir), learning_rate=3e-3, batch_size=2,
                                 epochs=3, seed=0, show_progress=False), trajectories=best)
    assert result.steps == 3
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 1.0
    # Generated tokens got likelier; the observation tokens were not trained toward.
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    after = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 504, 3062, 28, 1000, 1001, 300, 301, 2000, 2001]])

    def logp(model, pos):
        with torch.no_grad():
            return torch.log_softmax(model(ids).logits[0, pos - 1], -1)[ids[0, pos]].item()

    assert logp(after, 8) > logp(before, 8) + 1.0  # generated "2000" after the observation
    gain_obs = logp(after, 7) - logp(before, 7)  # the observation token "301"
    assert gain_obs < (logp(after, 8) - logp(before, 8)) / 2


def test_sft_logs_drift_from_its_reference_and_stops_on_the_kl_budget(tmp_path, tiny_model_dir):
    best = [two_step_trajectory([2000, 2001], [300, 301]), two_step_trajectory([2002, 2003], [300, 302])]
    out = tmp_path / "sft"
    train_sft(SFTConfig(out_dir=out, base=str(tiny_model_dir), learning_rate=3e-3, batch_size=2, epochs=4,
                        monitor_every=2, seed=0, show_progress=False), trajectories=best)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in records if "kl" in r]
    assert [r["step"] for r in probed] == [2, 4]  # every 2 steps, the last included
    assert 0 < probed[0]["kl"] < probed[1]["kl"]  # training moves the policy away, further each step
    assert all(r["entropy"] > 0 for r in probed)

    # A budget below the first measured KL stops training there (and still saves the model).
    stopped = tmp_path / "stopped"
    result = train_sft(SFTConfig(out_dir=stopped, base=str(tiny_model_dir), learning_rate=3e-3, batch_size=2,
                                 epochs=4, monitor_every=2, kl_budget=probed[0]["kl"] / 2, stop_on_kl_budget=True,
                                 seed=0, show_progress=False), trajectories=best)
    assert result.steps == 2 and (stopped / "config.json").is_file()
