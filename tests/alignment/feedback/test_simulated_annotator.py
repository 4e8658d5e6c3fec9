"""The simulated annotator ranks by correctness, then found evidence, then finishing, fewer
errors, fewer steps; equal scores tie; its rankings are stored as source=simulated."""
from __future__ import annotations

from rankact.agent.trajectory import StepError
from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.collection.simulated import SimulatedAnnotator, score
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.cli.main import main

Q = "What is 17 multiplied by 23?"


def _t(answer, steps=1, status="finished", errors=0):
    built = [{"thought": f"step {i}", "action": "calculator", "action_input": {"expression": "17*23"},
              "observation": "391", "error": StepError(kind="tool", message="x") if i < errors else None}
             for i in range(steps - 1)]
    built.append({"thought": "done", "final_answer": answer})
    return make_trajectory(Q, built, final_answer=answer, status=status)


def test_correct_beats_contained_beats_partial_beats_wrong():
    exact, contained, partial, wrong = _t("391"), _t("It is 391."), _t("391 or 401 maybe"), _t("401")
    ranking = SimulatedAnnotator().rank("q", [wrong, partial, exact, contained], ["391"])
    assert ranking.order == [[exact.id], [contained.id], [partial.id], [wrong.id]]
    assert ranking.source == "simulated" and ranking.annotator == "simulated"


def test_finished_then_fewer_errors_then_fewer_steps_and_ties():
    no_answer = _t(None, status="max_steps")
    wrong_short = _t("401")
    right_long = _t("391", steps=3)
    right_erroring = _t("391", steps=3, errors=1)
    right_short, right_short_twin = _t("391"), _t("391")
    ranking = SimulatedAnnotator("sim-2").rank(
        "q", [no_answer, right_erroring, wrong_short, right_long, right_short, right_short_twin], ["391"])
    # right_long and right_erroring checked the answer with the calculator (evidence): a grounded
    # answer beats an unchecked one; among those, fewer errors wins.
    assert ranking.order == [
        [right_long.id], [right_erroring.id], sorted([right_short.id, right_short_twin.id]), [wrong_short.id],
        [no_answer.id],
    ]
    assert ranking.annotator == "sim-2"
    assert score(right_short, ["391"]) == score(right_short_twin, ["391"])


def test_without_gold_only_process_counts():
    finished, looped = _t("a"), _t("b", status="loop")
    assert SimulatedAnnotator().rank("q", [looped, finished], []).order == [[finished.id], [looped.id]]


def test_annotate_all_ranks_unranked_questions_with_gold(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 's.db'}")
    load_sample_data(store)
    for t in (_t("x"), _t("y")):
        store.add(t, question_id="no-gold")
    sim = SimulatedAnnotator()
    ranked = sim.annotate_all(store)
    assert sorted(r.question_id for r in ranked) == ["sample-eiffel-designer", "sample-eiffel-year", "sample-multiply"]
    assert all(r.source == "simulated" for r in store.rankings())
    assert sim.annotate_all(store) == []  # nothing left
    eiffel = store.rankings("sample-eiffel-year")[0]
    answers = [[store.get(tid).final_answer for tid in group] for group in eiffel.order]
    assert answers == [["1889"], ["It was completed in 1889."], ["1887"]]
    multiply = store.rankings("sample-multiply")[0]
    statuses = [[store.get(tid).status for tid in group] for group in multiply.order]
    # the run that got 391 from the calculator but never answered beats a wrong guess
    assert statuses == [["finished"], ["max_steps"], ["finished"]]


def test_cli_simulate(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    main(["feedback", "demo-data", "--db", db])
    main(["feedback", "simulate", "--db", db])
    assert "simulated ranked 3 questions" in capsys.readouterr().out
    assert len(TrajectoryStore(db).rankings(source="simulated")) == 3


def test_a_wrong_answer_that_found_the_evidence_beats_one_that_did_not():
    found = make_trajectory(Q, [{"thought": "t", "action": "calculator", "action_input": {"expression": "17*23"},
                                 "observation": "391"}, {"thought": "t", "final_answer": "401"}],
                            final_answer="401", status="finished")
    guessed = make_trajectory(Q, [{"thought": "t", "action": "calculator", "action_input": {"expression": "401"},
                                   "observation": "401"}, {"thought": "t", "final_answer": "401"}],
                              final_answer="401", status="finished")
    ranking = SimulatedAnnotator().rank("q", [guessed, found], ["391"])
    assert ranking.order == [[found.id], [guessed.id]]
    assert score(found, ["391"])[3] == 1.0 and score(guessed, ["391"])[3] == 0.0


def test_outcome_criteria_tie_runs_that_are_wrong_the_same_way():
    wrong_fast, wrong_slow, looped = _t("401"), _t("402", steps=1), _t(None, status="loop")
    right = _t("391")
    ranking = SimulatedAnnotator(criteria="outcome").rank("q", [wrong_fast, wrong_slow, looped, right], ["391"])
    assert ranking.order == [[right.id], sorted([wrong_fast.id, wrong_slow.id, looped.id])]
    process = SimulatedAnnotator().rank("q", [wrong_fast, looped], ["391"])
    assert process.order == [[wrong_fast.id], [looped.id]]  # the default still splits them


def test_a_score_function_ranks_by_any_comparable_value():
    a, b, c = _t("x"), _t("y"), _t("z")
    scores = {a.id: 0.5, b.id: 2.0, c.id: 0.5}
    ranking = SimulatedAnnotator("reward-model", score_fn=lambda t, gold: scores[t.id]).rank("q", [a, b, c], [])
    assert ranking.order == [[b.id], sorted([a.id, c.id])]
