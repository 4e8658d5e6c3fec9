"""Fixtures of the feedback tests."""
from __future__ import annotations

import pytest

from rankact.alignment.feedback.collection.sample_data import load_sample_data
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore


@pytest.fixture
def sample_store(tmp_path):
    """A SQLite store holding the bundled sample questions and trajectories."""
    store = TrajectoryStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    load_sample_data(store)
    yield store
    store.close()
