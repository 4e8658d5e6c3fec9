import pytest
from pydantic import ValidationError

from rankact.alignment.feedback.records.rankings import Ranking, ranked_id_pairs


def test_k_trajectories_without_ties_give_k_choose_2_pairs():
    pairs = ranked_id_pairs([["a"], ["b"], ["c"], ["d"]])
    assert len(pairs) == 6
    assert ("a", "d") in pairs and ("d", "a") not in pairs


def test_ties_give_no_pair_between_the_tied():
    pairs = ranked_id_pairs([["a", "b"], ["c"]])
    assert sorted(pairs) == [("a", "c"), ("b", "c")]


def test_a_ranking_refuses_repeated_trajectories():
    with pytest.raises(ValidationError, match="more than once"):
        Ranking(question_id="q", annotator="x", order=[["a"], ["a"]])
