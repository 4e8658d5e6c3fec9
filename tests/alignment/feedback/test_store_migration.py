"""A store made at schema version 1 (before roles) opens as version 2: admins stay admins,
every other account becomes an annotator with its token still working, and rows that do
not read back (a NaN stored as null) are marked damaged instead of breaking reads."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rankact.alignment.feedback.collection.sample_data import sample_questions
from rankact.alignment.feedback.store.tables import SCHEMA_VERSION
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore, hash_token

V1_SCHEMA = Path(__file__).parent / "data" / "store_v1.sql"
NOW = "2025-01-01 00:00:00.000000"


@pytest.fixture
def v1_db(tmp_path):
    path = tmp_path / "v1.db"
    qid, text, gold, trajectories = sample_questions()[1]
    with sqlite3.connect(path) as raw:
        raw.executescript(V1_SCHEMA.read_text())
        raw.execute("INSERT INTO questions VALUES (?, ?, ?, '{}', ?)", (qid, text, f'["{gold[0]}"]', NOW))
        for i, t in enumerate(trajectories):
            data = t.to_json()
            if i == 0:  # what a NaN posted before strict input left behind
                data = data.replace('"seconds":0.0', '"seconds":null')
            raw.execute("INSERT INTO trajectories VALUES (?, ?, ?, 'm', ?, ?, ?)",
                        (t.id, qid, text, t.status, NOW, data))
        raw.execute("INSERT INTO annotators VALUES ('alice', ?, 0, ?)", (hash_token("alice-token"), NOW))
        raw.execute("INSERT INTO annotators VALUES ('root', ?, 1, ?)", (hash_token("root-token"), NOW))
    return path, qid, [t.id for t in trajectories]


def test_a_v1_store_migrates_in_place(v1_db):
    path, qid, ids = v1_db
    with TrajectoryStore(str(path)) as store:
        assert store.authenticate("alice-token").role == "annotator"
        assert store.authenticate("root-token").role == "admin"
        assert store.damaged_ids() == [ids[0]]
        assert sorted(t.id for t in store.list(qid)) == sorted(ids[1:])
        assert store.question(qid).trajectories == 2
        store.revoke("alice")
        assert store.authenticate("alice-token") is None
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION) == "4"
        columns = {row[1] for row in raw.execute("PRAGMA table_info(annotators)")}
        assert {"role", "revoked_at"} <= columns and "is_admin" not in columns
        assert raw.execute("SELECT count(*) FROM trajectories").fetchone()[0] == 3  # nothing deleted
    with TrajectoryStore(str(path)) as again:  # opening a migrated store changes nothing
        assert again.damaged_ids() == [ids[0]]


def test_a_store_without_an_admin_gets_one_from_the_cli(v1_db, capsys):
    from rankact.cli.main import main

    path, _qid, _ids = v1_db
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE annotators SET is_admin = 0")
    main(["admin", "create", "lead", "--role", "admin", "--db", str(path)])
    token = capsys.readouterr().out.strip()
    with TrajectoryStore(str(path)) as store:
        assert store.authenticate(token).role == "admin"
        assert {a.name: a.role for a in store.accounts()} == {"alice": "annotator", "lead": "admin",
                                                             "root": "annotator"}


V3_SCHEMA = Path(__file__).parent / "data" / "store_v3.sql"


def test_a_v3_store_migrates_to_v4(tmp_path):
    """v3 -> v4: the question is indexed by its hash instead of its text, leases gain `since`,
    and a vote keeps its id, which is now unique per app instead of across all apps."""
    from rankact.alignment.feedback.records.end_user import FeedbackIn

    path = tmp_path / "v3.db"
    qid, text, _gold, trajectories = sample_questions()[1]
    with sqlite3.connect(path) as raw:
        raw.executescript(V3_SCHEMA.read_text())
        raw.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        raw.execute("INSERT INTO questions VALUES (?, ?, '[]', '{}', ?)", (qid, text, NOW))
        for t in trajectories:
            raw.execute("INSERT INTO trajectories VALUES (?, ?, ?, 'm', ?, ?, ?, 0)",
                        (t.id, qid, text, t.status, NOW, t.to_json()))
        raw.execute("INSERT INTO end_user_feedback (id, slot, kind, question_id, trajectory_id, score, app, "
                    "end_user, comment, created_at, received_at) VALUES ('f1', 's1', 'thumbs', ?, ?, 1.0, 'shop', "
                    "'u', '', ?, ?)", (qid, trajectories[0].id, NOW, NOW))
    with TrajectoryStore(str(path)) as store:
        assert [(v.id, v.app) for v in store.end_user_feedback()] == [("f1", "shop")]
        rival = store.add_feedback(FeedbackIn(end_user="u", trajectory_id=trajectories[0].id, thumbs="down",
                                              feedback_id="f1"), app="rival")
        assert rival[1] == "created"  # not a clash with shop's f1
        assert store.next_question_for("alice").id == qid
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta").fetchone()[0] == "4"
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(trajectories)")}
        assert "ix_trajectories_question_sha256" in indexes and "ix_trajectories_question" not in indexes
        assert raw.execute("SELECT count(*) FROM trajectories WHERE question_sha256 IS NULL").fetchone()[0] == 0
