"""The documentation site builds with `mkdocs build --strict`: a broken link, a page left out
of the navigation or an API object that no longer exists fails it (as `make docs` and CI do)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # ~15-20 s: the API pages import nothing, but griffe reads every module


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        check=False, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()
    cli = (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8")
    # The lazily loaded subcommands and their options are rendered, not only the group.
    assert "rankact align dpo" in cli and "--samples" in cli
    api = (tmp_path / "site" / "api" / "agent" / "index.html").read_text(encoding="utf-8")
    assert "build_agent" in api
