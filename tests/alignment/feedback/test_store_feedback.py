"""The trajectory store: round trips, leases, ranking validation and idempotence, tokens,
durability settings and the schema version check."""
from __future__ import annotations

import sqlite3

import pytest

from rankact.agent.trajectory import Trajectory
from rankact.alignment.feedback.collection.sample_data import (
    load_sample_data,
    make_trajectory,
    sample_questions,
)
from rankact.alignment.feedback.records.rankings import Ranking, StepFlag
from rankact.alignment.feedback.store.tables import SCHEMA_VERSION
from rankact.alignment.feedback.store.trajectory_store import (
    ConflictError,
    InvalidRankingError,
    NotFoundError,
    SchemaVersionError,
    StoreError,
    TrajectoryStore,
    question_id_for,
)
from rankact.alignment.tasks import Task


@pytest.fixture
def store(sample_store):
    return sample_store


def _ids(store, qid):
    return store.trajectory_ids(qid)


def test_add_get_list_round_trip_keeps_segments_and_gold(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'a.db'}")
    qid, question, gold, trajectories = sample_questions()[0]
    for t in trajectories:
        assert store.add(t, question_id=qid, gold=gold) == qid
    back = store.get(trajectories[0].id)
    assert back == trajectories[0]
    assert [s.role for s in back.segments] == [s.role for s in trajectories[0].segments]
    assert {t.id for t in store.list(qid)} == {t.id for t in trajectories}
    assert {t.id for t in store.list(status="finished")} == {t.id for t in trajectories}
    [q] = store.questions()
    assert (q.id, q.text, q.gold, q.trajectories, q.rankings) == (qid, question, gold, 3, 0)


def test_default_question_id_matches_task_id(tmp_path):
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'a.db'}")
    t = make_trajectory("What is two plus two?", [{"final_answer": "4"}], final_answer="4")
    qid = store.add(t)
    assert qid == question_id_for(t.question) == Task(question=t.question).id


def test_unknown_and_duplicate_ids(store):
    with pytest.raises(NotFoundError, match="no trajectory"):
        store.get("nope")
    with pytest.raises(NotFoundError, match="no question"):
        store.question("nope")
    existing = store.list("sample-multiply")[0]
    with pytest.raises(ConflictError, match="already stored"):
        store.add(existing, question_id="sample-multiply")


def test_next_question_skips_single_trajectory_questions_and_respects_leases(store):
    lonely = make_trajectory("A question with one answer?", [{"final_answer": "x"}], final_answer="x")
    store.add(lonely, question_id="lonely")
    first = store.next_question_for("alice")
    assert first.id == "sample-eiffel-year"
    assert store.next_question_for("alice").id == first.id  # a reload keeps the same question
    second = store.next_question_for("bob")
    assert second.id != first.id  # alice's lease keeps bob off her question
    third = store.next_question_for("carol")
    assert {first.id, second.id, third.id} == {"sample-eiffel-year", "sample-multiply", "sample-eiffel-designer"}
    assert store.next_question_for("dave") is None  # all leased; "lonely" has one trajectory
    assert store.unranked_count("dave") == 3  # ... but three wait for dave once their leases end


def test_expired_lease_frees_the_question(store):
    first = store.next_question_for("alice", lease_seconds=0)
    assert store.next_question_for("bob").id == first.id


def test_ranked_questions_are_not_offered_again(store):
    seen = []
    while (q := store.next_question_for("alice")) is not None:
        seen.append(q.id)
        ids = _ids(store, q.id)
        store.submit_ranking(Ranking(question_id=q.id, annotator="alice", order=[[i] for i in ids]))
        assert len(seen) <= 3
    assert sorted(seen) == sorted(q.id for q in store.questions())
    # others are offered questions with the fewest rankings first
    assert store.next_question_for("bob") is not None


def test_ranking_must_be_a_permutation_of_the_questions_trajectories(store):
    ids = _ids(store, "sample-multiply")
    other = _ids(store, "sample-eiffel-year")[0]
    with pytest.raises(InvalidRankingError, match=f"missing {ids[2]}"):
        store.submit_ranking(Ranking(question_id="sample-multiply", annotator="a", order=[[ids[0]], [ids[1]]]))
    with pytest.raises(InvalidRankingError, match="not trajectories of this question"):
        store.submit_ranking(Ranking(question_id="sample-multiply", annotator="a",
                                     order=[[ids[0]], [ids[1]], [ids[2], other]]))
    with pytest.raises(NotFoundError):
        store.submit_ranking(Ranking(question_id="nope", annotator="a", order=[["x"]]))
    with pytest.raises(InvalidRankingError, match="flag names trajectory"):
        store.submit_ranking(Ranking(question_id="sample-multiply", annotator="a", order=[ids],
                                     flags=[StepFlag(trajectory_id=other, step_index=0)]))
    assert isinstance(InvalidRankingError("x"), ValueError)
    assert store.rankings() == []


def test_repeated_submission_is_idempotent_and_a_new_order_replaces(store):
    ids = _ids(store, "sample-multiply")
    ranking = Ranking(question_id="sample-multiply", annotator="alice", order=[[ids[0], ids[1]], [ids[2]]],
                      flags=[StepFlag(trajectory_id=ids[2], step_index=0, reason="wrong tool")], comment="ok")
    stored, created = store.submit_ranking(ranking)
    assert created and stored.order == [[ids[0], ids[1]], [ids[2]]]
    again, created_again = store.submit_ranking(ranking.model_copy(update={"id": "other-id"}))
    assert not created_again and again.id == stored.id and again == stored
    assert len(store.rankings()) == 1
    changed, created3 = store.submit_ranking(
        Ranking(question_id="sample-multiply", annotator="alice", order=[[ids[2]], [ids[1]], [ids[0]]]))
    assert not created3 and changed.id == stored.id
    [only] = store.rankings()
    assert only.order == [[ids[2]], [ids[1]], [ids[0]]] and only.flags == [] and only.comment == ""
    assert store.question("sample-multiply").rankings == 1


def test_tokens_are_hashed_and_authenticate(store, tmp_path):
    token = store.create_annotator("alice")
    admin_token = store.create_annotator("root", is_admin=True)
    assert store.authenticate(token).name == "alice"
    assert store.authenticate(admin_token).is_admin
    assert store.authenticate("wrong") is None and store.authenticate("") is None
    with pytest.raises(ConflictError):
        store.create_annotator("alice")
    with pytest.raises(StoreError):
        store.create_annotator("  ")
    raw = sqlite3.connect(tmp_path / "feedback.db").execute("SELECT token_hash FROM annotators").fetchall()
    assert token not in {row[0] for row in raw}


def test_sqlite_is_durable_wal_and_survives_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = TrajectoryStore(url)
    load_sample_data(store)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    ids = _ids(store, "sample-multiply")
    store.submit_ranking(Ranking(question_id="sample-multiply", annotator="a", order=[ids]))
    # A second process-like connection sees the committed write without closing the first.
    raw = sqlite3.connect(tmp_path / "d.db")
    assert raw.execute("SELECT count(*) FROM rankings").fetchone()[0] == 1
    store.close()
    reopened = TrajectoryStore(url)
    assert len(reopened.list()) == 9 and len(reopened.rankings()) == 1


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "old.db"
    TrajectoryStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match=f"schema version 99.*uses version {SCHEMA_VERSION}"):
        TrajectoryStore(f"sqlite:///{path}")


def test_foreign_database_and_missing_file(tmp_path):
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE trajectories (x INTEGER)")
    with pytest.raises(SchemaVersionError, match="not made by rankact"):
        TrajectoryStore(str(path))  # a bare path is a SQLite file
    with pytest.raises(StoreError, match="no database"):
        TrajectoryStore(str(tmp_path / "missing.db"), create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="cannot open .nosuch"):
        TrajectoryStore("nosuch+driver://")


def test_in_memory_store_and_trajectory_json_is_whole(tmp_path):
    store = TrajectoryStore("sqlite://")
    t = make_trajectory("q?", [{"thought": "<b>bold</b>", "final_answer": "a"}], final_answer="a")
    store.add(t, question_id="q")
    assert Trajectory.model_validate(store.get(t.id).model_dump()) == t


def test_admin_cli_creates_tokens_and_lists(tmp_path, capsys):
    from rankact.cli.main import main

    db = f"sqlite:///{tmp_path / 'admin.db'}"
    main(["admin", "create-annotator", "alice", "--db", db])
    token = capsys.readouterr().out.strip()
    main(["admin", "create-annotator", "root", "--admin", "--db", db])
    capsys.readouterr()
    assert TrajectoryStore(db).authenticate(token).name == "alice"
    with pytest.raises(SystemExit) as exit_info:
        main(["admin", "create-annotator", "alice", "--db", db])
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err
    main(["admin", "list", "--db", db])
    listing = capsys.readouterr().out
    assert "alice\t0 rankings" in listing and "root (admin)" in listing
