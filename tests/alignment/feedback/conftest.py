"""Fixtures of the feedback tests."""
from __future__ import annotations

import os

import pytest

from rankact.alignment.feedback.collection.sample_data import load_sample_data
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

POSTGRES_URL = os.environ.get("RANKACT_TEST_POSTGRES_URL")


@pytest.fixture
def sample_store(tmp_path):
    """A SQLite store holding the bundled sample questions and trajectories."""
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    load_sample_data(store)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """An empty store's URL on each database: a SQLite file, and PostgreSQL when
    RANKACT_TEST_POSTGRES_URL names a scratch database (its rankact tables are dropped first;
    `.ci/run` starts one). The red-team store and service tests run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if not POSTGRES_URL:
        pytest.skip("set RANKACT_TEST_POSTGRES_URL to a scratch PostgreSQL database")
    pytest.importorskip("psycopg")
    from sqlalchemy import create_engine

    from rankact.alignment.feedback.store.tables import Base

    engine = create_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return POSTGRES_URL
