"""`rankact align rounds` on a tiny random model: round 0 and round 1 are measured and
reported, a rerun with more rounds resumes (finished stages are not redone), people-ranking
stops and says how to continue, and the monitors read held-out behaviour."""
from __future__ import annotations

import json

import pytest

from rankact.agent.trajectory import ModelRef, Step, Trajectory
from rankact.alignment.feedback.demonstrations.recording import read_demonstrations
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.rounds import Rounds, RoundsConfig, behaviour
from rankact.alignment.tasks import Task, write_tasks


def _tasks(tmp_path):
    train = [Task(question=f"What is {a} + {b}?", answers=[str(a + b)], metadata={"tools": ["calculator"]})
             for a, b in ((12, 30), (7, 8))]
    heldout = [Task(question=f"What is {a} * {b}?", answers=[str(a * b)], metadata={"tools": ["calculator"]})
               for a, b in ((3, 4), (6, 7))]
    write_tasks(train, tmp_path / "train.jsonl")
    write_tasks(heldout, tmp_path / "heldout.jsonl")
    return str(tmp_path / "train.jsonl"), str(tmp_path / "heldout.jsonl")


def _config(tmp_path, tiny_model_dir, **overrides):
    train, heldout = _tasks(tmp_path)
    values = {"out_dir": tmp_path / "run", "tasks": train, "heldout": heldout, "base": str(tiny_model_dir),
              "rounds": 1, "samples": 2, "agent_max_steps": 1, "train_steps": 1, "train_batch_size": 2,
              "max_length": 512, "temperature": 1.0, "batch_size": 4, "learning_rate": 5e-2}
    values.update(overrides)
    return RoundsConfig(**values)


def test_rounds_measure_train_report_and_resume(tmp_path, tiny_model_dir, monkeypatch):
    # A random tiny model answers nothing right, so every run would tie; rank shorter answers first.
    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score",
                        lambda t, gold, criteria="process": (-len(t.final_answer or "x" * 999),))
    said: list[str] = []
    records = Rounds(_config(tmp_path, tiny_model_dir), say=said.append).run()
    assert [r.round for r in records] == [0, 1]
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1] and (run / "report.png").is_file()
    assert records[1].collected == 4 and records[1].p_value is not None
    stages = json.loads((run / "round-1" / "stages.json").read_text())
    assert set(stages) == {"collect", "rank", "train", "eval"}
    assert stages["rank"]["source"] == "simulated"
    assert stages["train"]["steps"] == 1 and (run / "round-1" / "policy" / "config.json").is_file()
    assert records[1].policy == str(run / "round-1" / "policy")
    assert records[1].kl is not None and records[1].kl > 0  # measured on the round's rollouts
    assert any(line.startswith("round 1: held-out success") for line in said)

    # A rerun with one more round does round 2 only.
    def no_redo(self, r):
        raise AssertionError(f"round {r} collected again")

    original = Rounds.collect
    monkeypatch.setattr(Rounds, "collect", lambda self, r: original(self, r) if r == 2 else no_redo(self, r))
    records = Rounds(_config(tmp_path, tiny_model_dir, rounds=2), say=said.append).run()
    assert [r.round for r in records] == [0, 1, 2]
    assert (run / "round-2" / "stages.json").is_file()


@pytest.mark.parametrize("method", ["dpo", "grpo"])
def test_rounds_replay_the_starting_policys_plain_replies(tmp_path, tiny_model_dir, shared_data, monkeypatch, method):
    from rankact.alignment.training.replay import read_replay

    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score",
                        lambda t, gold, criteria="process": (-len(t.final_answer or "x" * 999),))
    said: list[str] = []
    Rounds(_config(tmp_path, tiny_model_dir, method=method, replay="nq:dev", replay_limit=2, data=shared_data),
           say=said.append).run()
    run = tmp_path / "run"
    examples = read_replay(run / "replay.jsonl")
    assert [e.source for e in examples] == ["nq-0", "nq-1"] and all(e.reply_ids for e in examples)
    assert json.loads((run / "round-0" / "stages.json").read_text())["replay"]["examples"] == 2
    metrics = [json.loads(line) for line in (run / "round-1" / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("replay_loss", 0) > 0 for m in metrics)  # the trainer replayed them


def test_rounds_train_written_refusals_beside_the_replayed_replies(tmp_path, tiny_model_dir, shared_data,
                                                                  monkeypatch):
    from rankact.alignment.feedback.demonstrations.refusal import AUTHOR
    from rankact.alignment.training.replay import read_replay

    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score",
                        lambda t, gold, criteria="process": (-len(t.final_answer or "x" * 999),))
    config = _config(tmp_path, tiny_model_dir, method="sft", replay="nq:dev", replay_limit=1,
                     refusals="advbench:dev", refusal_limit=2, data=shared_data)
    Rounds(config, say=[].append).run()
    run = tmp_path / "run"
    examples = read_replay(run / "replay.jsonl")
    assert [(e.source, e.author) for e in examples] == [("nq-0", "policy"), ("advbench-0", AUTHOR),
                                                       ("advbench-1", AUTHOR)]
    stage = json.loads((run / "round-0" / "stages.json").read_text())["replay"]
    assert (stage["examples"], stage["written_refusals"]) == (1, 2)
    metrics = [json.loads(line) for line in (run / "round-1" / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("replay_loss", 0) > 0 for m in metrics)


@pytest.mark.parametrize(("refusals", "message"), [
    ("nq:dev", "harmful requests"),
    ("benign:dev", "harmful requests"),
    ("advbench:test", "DEV split"),
])
def test_refusals_only_for_harmful_dev_requests(tmp_path, tiny_model_dir, refusals, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, tiny_model_dir, refusals=refusals)


def test_people_ranking_stops_and_says_how_to_continue(tmp_path, tiny_model_dir):
    said: list[str] = []
    records = Rounds(_config(tmp_path, tiny_model_dir, ranker="people"), say=said.append).run()
    assert [r.round for r in records] == [0]
    assert any("rankact serve --db sqlite:///" in line and "rerun" in line for line in said)
    assert "rank" not in json.loads((tmp_path / "run" / "round-1" / "stages.json").read_text())


def test_demonstrations_join_their_questions_samples_and_rank_above_wrong_runs(tmp_path, tiny_model_dir):
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    demo = {"question": "What is 12 + 30?", "steps": [
        {"thought": "add", "action": "calculator", "action_input": {"expression": "12 + 30"}},
        {"thought": "I now know the answer", "final_answer": "42"}]}
    (tmp_path / "demos.jsonl").write_text(json.dumps(demo) + "\n")
    rounds = Rounds(_config(tmp_path, tiny_model_dir, agent_max_steps=2, demonstrations=tmp_path / "demos.jsonl"),
                    say=lambda _line: None)
    rounds.run()
    stages = json.loads((tmp_path / "run" / "round-1" / "stages.json").read_text())
    assert stages["collect"]["demonstrations"] == 1 and stages["collect"]["trajectories"] == 5  # 2 tasks x 2 + 1
    with TrajectoryStore(rounds.store_url(1), create=False) as store:
        question = next(q for q in store.questions() if q.text == "What is 12 + 30?")
        runs = {t.id: t for t in store.list(question.id)}
        [ranking] = [r for r in store.rankings() if r.question_id == question.id]
    demonstration = next(t for t in runs.values() if t.metadata.get("source") == "demonstration")
    assert len(runs) == 3 and ranking.order[0] == [demonstration.id]  # the random samples are wrong


def test_demonstrations_of_questions_that_are_not_training_tasks_are_refused(tmp_path, tiny_model_dir):
    from rankact.alignment.errors import DemonstrationError

    demo = {"question": "What is 2 + 2?", "steps": [{"thought": "t", "final_answer": "4"}]}
    (tmp_path / "demos.jsonl").write_text(json.dumps(demo) + "\n")
    with pytest.raises(DemonstrationError, match="not among the tasks"):
        Rounds(_config(tmp_path, tiny_model_dir, demonstrations=tmp_path / "demos.jsonl"))


def test_heldout_questions_must_not_be_training_questions(tmp_path, tiny_model_dir):
    from rankact.agent.errors import RankactError

    train, _ = _tasks(tmp_path)
    with pytest.raises(RankactError, match="heldout-skip"):
        Rounds(_config(tmp_path, tiny_model_dir, heldout=train))


def _run(actions):
    steps = [Step(index=i, action=a, action_input=inp) for i, (a, inp) in enumerate(actions)]
    return Trajectory(question="q", model=ModelRef(backend="t", name="t"), prompt_version="v", steps=steps)


def test_behaviour_counts_tool_use_and_repeats():
    runs = [_run([("calculator", {"expression": "1+1"}), ("calculator", {"expression": "1+1"})]),
            _run([(None, None)]),
            _run([("calculator", {"expression": "2"}), ("search", {"query": "2"})])]
    calling, repeated = behaviour(runs)
    assert calling == pytest.approx(2 / 3) and repeated == pytest.approx(1 / 4)
    assert behaviour([]) == (0.0, 0.0)


LOOKUP = [("who wrote the odyssey", "Homer", "The Odyssey is an epic poem attributed to Homer."),
          ("what is the capital of peru", "Lima", "Lima is the capital and largest city of Peru."),
          ("who painted guernica", "Pablo Picasso", "Guernica is a 1937 painting by Pablo Picasso.")]


@pytest.fixture()
def tiny_lookup_preset(tmp_path, monkeypatch):
    """`nq:dev` as three questions over a three-passage index (the real embedder), so rounds'
    lookup path runs without building the whole NQ DEV index."""
    from rankact.alignment.tasks import indexes

    folder = indexes.build_index([{"id": f"p{i}", "title": q, "text": text}
                                  for i, (q, _a, text) in enumerate(LOOKUP)], tmp_path / "lookup-index", progress=False)
    tasks = [Task(id=f"nq-{i}", question=q, answers=[a], metadata={"tools": ["search"]})
             for i, (q, a, _t) in enumerate(LOOKUP)]
    original = indexes.tasks_and_index
    monkeypatch.setattr(indexes, "tasks_and_index", lambda spec, data=None, **kw: (
        (tasks[:kw.get("limit")], folder) if spec == "nq:dev" else original(spec, data, **kw)))
    return tasks


def test_lookup_sets_are_taught_from_their_demonstrations_beside_the_ranked_samples(
        tmp_path, tiny_model_dir, tiny_lookup_preset, monkeypatch):
    from rankact.alignment.training import sft

    trained_on: list = []
    original = sft.encode_best
    monkeypatch.setattr(sft, "encode_best", lambda items, *a, **kw: trained_on.extend(items) or original(items, *a, **kw))
    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score",
                        lambda t, gold, criteria="process": (-len(t.final_answer or "x" * 999),))
    rounds = Rounds(_config(tmp_path, tiny_model_dir, lookup="nq:dev", lookup_limit=2, agent_max_steps=2),
                    say=lambda _line: None)
    rounds.run()
    run = tmp_path / "run"
    assert json.loads((run / "round-0" / "stages.json").read_text())["lookup"]["demonstrations"] == {"nq:dev": 2}
    written = read_demonstrations(run / "lookup-nq-dev.jsonl")
    assert [d.question for d in written] == [q for q, _a, _t in LOOKUP[:2]]
    assert [d.steps[-1].final_answer for d in written] == ["Homer", "Lima"]
    taught = [t for t in trained_on if t.metadata.get("source") == "demonstration"]
    assert [t.question for t in taught] == [d.question for d in written]
    assert "Homer" in taught[0].steps[0].observation  # recorded with the set's own search
    with TrajectoryStore(rounds.store_url(1), create=False) as store:  # nothing was sampled for them
        assert {q.text for q in store.questions()} == {"What is 12 + 30?", "What is 7 + 8?"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"method": "dpo"}, "method sft"),
    ({"lookup": "arith:dev"}, "preset with passages"),
    ({"lookup": "nq:test"}, "DEV split"),
])
def test_lookup_settings_that_cannot_work_are_refused(tmp_path, tiny_model_dir, overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, tiny_model_dir, **{"lookup": "nq:dev", **overrides})


def test_lookup_questions_must_not_be_heldout_questions(tmp_path, tiny_model_dir, tiny_lookup_preset):
    from rankact.agent.errors import RankactError

    write_tasks(tiny_lookup_preset, tmp_path / "heldout-lookup.jsonl")
    rounds = Rounds(_config(tmp_path, tiny_model_dir, lookup="nq:dev", heldout=str(tmp_path / "heldout-lookup.jsonl")),
                    say=lambda _line: None)
    with pytest.raises(RankactError, match="held-out questions are also --lookup"):
        rounds.make_lookup()


def test_a_rounds_trainer_gets_the_round_defaults_the_shortcuts_and_the_trainer_override(tmp_path):
    plain = RoundsConfig(out_dir=tmp_path, tasks="arith:dev", heldout="arith:dev")
    sft = plain.trainer_config(out_dir=tmp_path / "p", db="sqlite:///x.db")
    assert (sft.max_steps, sft.batch_size, sft.learning_rate, sft.max_length, sft.gradient_checkpointing,
            sft.epochs) == (12, 4, 2e-4, 768, False, 1000)
    grpo = RoundsConfig(out_dir=tmp_path, tasks="arith:dev", heldout="arith:dev", method="grpo", train_steps=3,
                        trainer={"kl-coef": 0.3, "flag_penalty": 2.0}).trainer_config(out_dir=tmp_path)
    assert (grpo.max_steps, grpo.kl_coef, grpo.flag_penalty, grpo.clip_range) == (3, 0.3, 2.0, 0.2)
    # the override wins over a shortcut
    assert RoundsConfig(out_dir=tmp_path, tasks="arith:dev", heldout="arith:dev", train_steps=3,
                        trainer={"max_steps": 7}).trainer_settings()["max_steps"] == 7


@pytest.mark.parametrize(("values", "message"), [
    ({"trainer": {"bogus": 1}}, "trainer setting 'bogus' is not a setting of SFTConfig \\(method sft\\)"),
    ({"trainer": {"kl_coef": 0.1}}, "'kl_coef' is not a setting of SFTConfig"),
    ({"method": "dpo", "trainer": {"clip_range": 0.1}}, "'clip_range' is not a setting of DPOConfig"),
    ({"trainer": {"seed": 3}}, "'seed' is set by the rounds themselves"),
    ({"trainer": {"max_steps": 0}}, "trainer setting 'max_steps': Input should be greater than or equal to 1"),
])
def test_a_bad_trainer_override_is_one_clear_error(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        RoundsConfig(out_dir=tmp_path, tasks="arith:dev", heldout="arith:dev", **values)


def test_rounds_measure_out_of_distribution_and_what_the_policy_writes(tmp_path, tiny_model_dir, monkeypatch):
    """--heldout-ood is measured every round beside --heldout, with its own McNemar p, and the
    record carries the thought monitors; the summary line shows both distributions."""
    monkeypatch.setattr("rankact.alignment.feedback.collection.simulated.score",
                        lambda t, gold, criteria="process": (-len(t.final_answer or "x" * 999),))
    said: list[str] = []
    records = Rounds(_config(tmp_path, tiny_model_dir, heldout_ood="arith-heldout:dev", heldout_ood_limit=3),
                     say=said.append).run()
    run = tmp_path / "run"
    assert (run / "round-0" / "eval-ood.json").is_file() and (run / "round-1" / "eval-ood.json").is_file()
    ood = json.loads((run / "round-1" / "eval-ood.json").read_text())
    assert ood["n"] == 3 and records[1].success_ood == ood["success"]
    assert records[1].p_value_ood is not None and records[1].success_ood_low <= records[1].success_ood_high
    assert records[1].distinct_thought_ratio is not None and 0 <= records[1].distinct_thought_ratio <= 1
    assert records[1].template_spread is not None  # the held-out phrasings carry template ids
    assert any("out of distribution" in line for line in said if line.startswith("round 1:"))
    report = json.loads((run / "report.json").read_text())
    assert report["rounds"][1]["success_ood"] == records[1].success_ood


def test_collapse_warnings_reach_the_round_record(tmp_path, tiny_model_dir, monkeypatch):
    """A round whose thoughts collapse (fewer than half of round 0's distinct) is warned about."""
    rounds = Rounds(_config(tmp_path, tiny_model_dir), say=lambda _line: None)
    base_eval = {"success": 0.2, "interval": [0.1, 0.4], "em": 0.2, "mean_tokens": 10, "tool_call_rate": 1.0,
                 "repeated_action_rate": 0.0, "distinct_thought_ratio": 0.9, "success_ood": 0.2,
                 "interval_ood": [0.1, 0.4]}
    later = dict(base_eval, distinct_thought_ratio=0.2, success=0.8, success_ood=0.1)
    stages = {0: {"eval": base_eval}, 1: {"eval": later}}
    monkeypatch.setattr(Rounds, "stages", lambda self, r: stages[r])
    monkeypatch.setattr(Rounds, "_mcnemar", lambda self, a, b, name="eval.json": 1.0)
    base = rounds.record(0)
    record = rounds.record(1, base=base, previous=base)
    assert any("thoughts collapsed" in w for w in record.warnings)
    assert any("out of distribution fell" in w for w in record.warnings)
