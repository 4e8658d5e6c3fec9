"""The store on PostgreSQL. Runs when RANKACT_TEST_POSTGRES_URL names a scratch database
(its rankact tables are dropped first) and psycopg is installed; skipped otherwise."""
from __future__ import annotations

import os
import threading
from itertools import permutations

import pytest

from rankact.alignment.feedback.collection.sample_data import load_sample_data, make_trajectory
from rankact.alignment.feedback.records.rankings import Ranking
from rankact.alignment.feedback.store.tables import Base
from rankact.alignment.feedback.store.trajectory_store import SchemaVersionError, TrajectoryStore

URL = os.environ.get("RANKACT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set RANKACT_TEST_POSTGRES_URL to a scratch PostgreSQL database")


@pytest.fixture
def store():
    pytest.importorskip("psycopg")
    from sqlalchemy import create_engine

    engine = create_engine(URL)
    Base.metadata.drop_all(engine)
    engine.dispose()
    s = TrajectoryStore(URL)
    load_sample_data(s)
    yield s
    s.close()


def test_round_trip_leases_and_rankings(store):
    qid = "sample-multiply"
    ids = store.trajectory_ids(qid)
    assert store.get(ids[0]).id == ids[0] and len(store.list()) == 9
    first = store.next_question_for("alice")
    assert store.next_question_for("bob").id != first.id
    ranking = Ranking(question_id=qid, annotator="alice", order=[[ids[0]], [ids[1], ids[2]]])
    assert store.submit_ranking(ranking)[1] is True
    assert store.submit_ranking(ranking)[1] is False
    assert [r.order for r in store.rankings(qid)] == [ranking.order]
    token = store.create_annotator("alice")
    assert store.authenticate(token).name == "alice"
    assert store.questions()[1].rankings == 1


def test_concurrent_submissions_none_lost(store):
    qid = "sample-eiffel-year"
    ids = store.trajectory_ids(qid)
    orders = [[[a], [b], [c]] for a, b, c in permutations(ids)]
    barrier = threading.Barrier(20)
    errors = []

    def submit(i, annotator):
        barrier.wait()
        try:
            store.submit_ranking(Ranking(question_id=qid, annotator=annotator, order=orders[i % 6]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i, f"a{i}" if i < 10 else "same")) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    stored = store.rankings(qid)
    assert sorted(r.annotator for r in stored) == sorted([f"a{i}" for i in range(10)] + ["same"])


def test_schema_version_mismatch(store):
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        TrajectoryStore(URL)


def _back_to_v3_trajectories_and_leases(conn) -> None:
    from sqlalchemy import text

    conn.execute(text("ALTER TABLE trajectories DROP COLUMN question_sha256"))  # drops its index too
    conn.execute(text("CREATE INDEX ix_trajectories_question ON trajectories (question)"))
    conn.execute(text("ALTER TABLE leases DROP COLUMN since"))


def test_a_v3_store_migrates_to_v4(store):
    """v3 -> v4 on PostgreSQL: the question is indexed by hash (a long one is then stored),
    leases gain `since`, votes keep their ids, now unique per app."""
    from sqlalchemy import text

    from rankact.alignment.feedback.records.end_user import FeedbackIn

    tid = store.trajectory_ids("sample-multiply")[0]
    store.add_feedback(FeedbackIn(end_user="u", trajectory_id=tid, thumbs="up", feedback_id="f1"), app="shop")
    with store.engine.begin() as conn:
        _back_to_v3_trajectories_and_leases(conn)
        conn.execute(text("DROP INDEX ix_end_user_feedback_app"))
        conn.execute(text("ALTER TABLE end_user_feedback DROP CONSTRAINT uq_end_user_feedback_app_id"))
        conn.execute(text("UPDATE end_user_feedback SET id = feedback_id"))
        conn.execute(text("ALTER TABLE end_user_feedback DROP COLUMN feedback_id"))
        conn.execute(text("UPDATE meta SET value = '3' WHERE key = 'schema_version'"))
    store.close()
    with TrajectoryStore(URL) as migrated:
        assert [v.id for v in migrated.end_user_feedback()] == ["f1"]
        long_question = "x" * 9000
        qid = migrated.add(make_trajectory(long_question, [{"thought": "t", "final_answer": "a"}], final_answer="a"))
        assert migrated.question(qid).text == long_question
        assert migrated.next_question_for("alice") is not None
        # the same id from another app is that app's own vote
        other = migrated.add_feedback(FeedbackIn(end_user="u", trajectory_id=tid, thumbs="down", feedback_id="f1"),
                                      app="rival")
        assert other[1] == "created"


def test_a_v1_store_migrates(store):
    """The v1 -> v4 migration's DDL on PostgreSQL: the store is taken back to v1's shape first."""
    from sqlalchemy import text

    admin, alice = store.create_account("root", "admin"), store.create_account("alice")
    damaged = store.trajectory_ids("sample-multiply")[0]
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE annotators ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT false"))
        conn.execute(text("UPDATE annotators SET is_admin = (role = 'admin')"))
        conn.execute(text("ALTER TABLE annotators DROP COLUMN role, DROP COLUMN revoked_at"))
        conn.execute(text("ALTER TABLE trajectories DROP COLUMN damaged"))
        conn.execute(text("DROP TABLE end_user_feedback"))  # v3's
        _back_to_v3_trajectories_and_leases(conn)
        conn.execute(text("UPDATE trajectories SET data = replace(data, :good, :bad) WHERE id = :id"),
                     {"good": '"seconds":0.0', "bad": '"seconds":null', "id": damaged})
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    store.close()
    with TrajectoryStore(URL) as migrated:
        assert migrated.authenticate(admin).role == "admin" and migrated.authenticate(alice).role == "annotator"
        assert migrated.damaged_ids() == [damaged] and len(migrated.list()) == 8
        assert migrated.question("sample-multiply").trajectories == 2
