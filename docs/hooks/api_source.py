"""MkDocs hook: a `rankact/` source tree griffe can read, for the API pages.

rankact installs folders under other names (`agent/` is `rankact.agent`: setuptools'
`package-dir` table in pyproject.toml). Importing follows that map, but griffe (mkdocstrings'
reader) finds modules by folder name and would look for `rankact/agent/`. So before each build
this lays out `build/api-source/rankact/` as symbolic links, one per mapped package, read from
the same table the installer uses; mkdocs.yml points mkdocstrings at `build/api-source`.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "build" / "api-source"


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target`, atomically, so two builds at once never see a half-made tree."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=target.is_dir())
    os.replace(tmp, link)


def build_source_tree() -> Path:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    tree = SOURCE / "rankact"
    tree.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, Path] = {}
    for entry in (ROOT / package_dir["rankact"]).iterdir():  # the top package's own files
        if entry.name != "__pycache__":
            wanted[entry.name] = entry
    for name, folder in package_dir.items():
        if name.startswith("rankact."):
            wanted[name.removeprefix("rankact.")] = ROOT / folder
    for name, target in wanted.items():
        _link(tree / name, target)
    for stale in tree.iterdir():
        if stale.name not in wanted and not stale.name.startswith("."):
            stale.unlink()
    return SOURCE


@event_priority(100)  # before mkdocstrings reads its handler paths
def on_config(config):
    build_source_tree()
    return config
