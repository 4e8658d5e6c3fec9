"""The default evaluation data folder is `../shared/data` beside the checkout, the same place
the test suite reads it from (tests/conftest.py)."""
from __future__ import annotations

import pytest

from rankact.alignment.tasks.datasets import data_dir


def test_the_default_data_folder_lies_beside_the_checkout(monkeypatch, shared_data):
    monkeypatch.delenv("RANKACT_DATA", raising=False)
    assert data_dir() == shared_data.resolve()


def test_rankact_data_points_elsewhere_and_a_missing_folder_is_one_clear_error(monkeypatch, tmp_path):
    from rankact.alignment.errors import DatasetError

    monkeypatch.setenv("RANKACT_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.setenv("RANKACT_DATA", str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="RANKACT_DATA"):
        data_dir()
