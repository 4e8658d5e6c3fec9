"""Export of rankings (pairs with whole trajectories, TRL text pairs, raw rankings) and the
agreement statistics, through Python and the CLI."""
from __future__ import annotations

import json
import math

import pytest

from rankact.alignment.feedback.preferences.agreement import feedback_stats, kendall_tau_b, pair_agreement
from rankact.alignment.feedback.preferences.export import export_lines, write_export
from rankact.alignment.feedback.preferences.pairs import PreferencePair, TextPair
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.cli.main import main


@pytest.fixture
def store(sample_store):
    return sample_store


def _rank(store, qid, annotator, order, source="human"):
    store.submit_ranking(Ranking(question_id=qid, annotator=annotator, order=order, source=source))


def test_pairs_are_all_ordered_pairs_without_ties_grouped_by_question(store):
    a, b, c = store.trajectory_ids("sample-eiffel-year")
    x, y, z = store.trajectory_ids("sample-multiply")
    _rank(store, "sample-multiply", "alice", [[x, y], [z]])
    _rank(store, "sample-eiffel-year", "alice", [[c], [a], [b]])
    _rank(store, "sample-multiply", "bob", [[z], [y], [x]])
    pairs = [PreferencePair.model_validate_json(line) for line in export_lines(store, "pairs")]
    got = [(p.question_id, p.annotator, p.chosen.id, p.rejected.id) for p in pairs]
    assert got == [
        ("sample-eiffel-year", "alice", c, a), ("sample-eiffel-year", "alice", c, b),
        ("sample-eiffel-year", "alice", a, b),
        ("sample-multiply", "alice", x, z), ("sample-multiply", "alice", y, z),  # the x=y tie gives none
        ("sample-multiply", "bob", z, y), ("sample-multiply", "bob", z, x), ("sample-multiply", "bob", y, x),
    ]
    first = pairs[0]
    assert first.question == "In which year was the Eiffel Tower completed?"
    roles = {s.role for p in pairs for t in (p.chosen, p.rejected) for s in t.segments}
    assert roles == {"prompt", "generated", "observation"}  # segments travel whole, masks included
    assert first.chosen == store.get(c)


def test_trl_and_rankings_formats(store, tmp_path):
    a, b, c = store.trajectory_ids("sample-eiffel-year")
    _rank(store, "sample-eiffel-year", "alice", [[a], [b, c]])
    trl = [TextPair.model_validate_json(line) for line in export_lines(store, "trl")]
    assert len(trl) == 2
    assert trl[0].prompt.endswith("Question: In which year was the Eiffel Tower completed?\n")
    assert trl[0].chosen == "".join(s.text for s in store.get(a).segments[1:])
    assert trl[0].group == "sample-eiffel-year"
    count = write_export(store, "rankings", tmp_path / "out" / "r.jsonl")
    lines = (tmp_path / "out" / "r.jsonl").read_text().splitlines()
    assert count == 1 and Ranking.model_validate_json(lines[0]).order == [[a], [b, c]]
    with pytest.raises(ValueError, match="unknown export format"):
        list(export_lines(store, "csv"))


def test_kendall_tau_and_pair_agreement_by_hand():
    assert kendall_tau_b([["x"], ["y"], ["z"]], [["x"], ["y"], ["z"]]) == 1.0
    assert kendall_tau_b([["x"], ["y"], ["z"]], [["z"], ["y"], ["x"]]) == -1.0
    assert kendall_tau_b([["x"], ["y"], ["z"]], [["x"], ["z"], ["y"]]) == pytest.approx(1 / 3)
    # with a tie: 2 concordant of 3 pairs, one tied in the first order -> 2 / sqrt(2 * 3)
    assert kendall_tau_b([["x", "y"], ["z"]], [["x"], ["y"], ["z"]]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau_b([["x", "y", "z"]], [["x"], ["y"], ["z"]]) is None
    assert pair_agreement([["x"], ["y"], ["z"]], [["x"], ["z"], ["y"]]) == (2, 3)
    assert pair_agreement([["x", "y"], ["z"]], [["y"], ["x"], ["z"]]) == (2, 2)


def test_kendall_tau_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    a = [["p"], ["q", "r"], ["s"], ["t", "u"]]
    b = [["u"], ["p", "q"], ["r"], ["s", "t"]]
    ranks_a = {t: i for i, g in enumerate(a) for t in g}
    ranks_b = {t: i for i, g in enumerate(b) for t in g}
    items = sorted(ranks_a)
    expected = scipy_stats.kendalltau([ranks_a[i] for i in items], [ranks_b[i] for i in items]).statistic
    assert kendall_tau_b(a, b) == pytest.approx(expected)


def test_stats_counts_and_agreement(store):
    a, b, c = store.trajectory_ids("sample-eiffel-year")
    x, y, z = store.trajectory_ids("sample-multiply")
    _rank(store, "sample-eiffel-year", "alice", [[a], [b], [c]])
    _rank(store, "sample-eiffel-year", "bob", [[a], [c], [b]])
    _rank(store, "sample-multiply", "alice", [[x, y], [z]])
    _rank(store, "sample-multiply", "simulated", [[x], [y], [z]], source="simulated")
    stats = feedback_stats(store)
    assert (stats.questions, stats.trajectories, stats.questions_rankable) == (3, 9, 3)
    assert stats.questions_ranked == 2 and stats.questions_multiply_ranked == 2
    assert stats.rankings == 4 and stats.rankings_by_source == {"human": 3, "simulated": 1}
    assert stats.annotators == {"alice": 2, "bob": 1, "simulated": 1}
    assert stats.pairs == 3 + 3 + 2 + 3 == sum(1 for _ in export_lines(store, "pairs"))
    assert stats.annotator_pairs_compared == 2
    assert stats.mean_kendall_tau == pytest.approx((1 / 3 + 2 / math.sqrt(6)) / 2)
    assert stats.pair_agreement_rate == pytest.approx((2 + 2) / (3 + 2))


def test_cli_export_stats_and_errors(store, tmp_path, capsys):
    a, b, c = store.trajectory_ids("sample-eiffel-year")
    _rank(store, "sample-eiffel-year", "alice", [[a], [b], [c]])
    out = tmp_path / "pairs.jsonl"
    main(["feedback", "export", "--db", store.url, "--format", "pairs", "--out", str(out)])
    assert len(out.read_text().splitlines()) == 3
    assert "wrote 3 pairs lines" in capsys.readouterr().out
    main(["feedback", "stats", "--db", store.url, "--json"])
    assert json.loads(capsys.readouterr().out)["pairs"] == 3
    main(["feedback", "stats", "--db", store.url])
    table = capsys.readouterr().out
    assert "Kendall" in table and "preference pairs" in table
    with pytest.raises(SystemExit) as exit_info:
        main(["feedback", "export", "--db", store.url, "--format", "csv", "--out", str(out)])
    assert exit_info.value.code == 2 and "--format must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["feedback", "stats", "--db", str(tmp_path / "missing.db")])
    assert "no database at" in capsys.readouterr().err
