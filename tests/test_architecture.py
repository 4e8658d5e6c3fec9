"""No import cycles anywhere in rankact, at module level: a stricter check than import-linter's
`acyclic_siblings` contract (`make lint`), which sees cycles between siblings but not a module
that imports its own package's `__init__` while that `__init__` imports it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Prints each strongly connected group of modules (a cycle) on its own line.
SCC = """
import sys
import grimp
sys.setrecursionlimit(10000)
graph = grimp.build_graph("rankact")
index, low, stack, on, groups = {}, {}, [], set(), []
def visit(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in graph.find_modules_directly_imported_by(v):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        group = []
        while True:
            w = stack.pop(); on.discard(w); group.append(w)
            if w == v:
                break
        if len(group) > 1:
            groups.append(sorted(group))
for module in sorted(graph.modules):
    if module not in index:
        visit(module)
print(len(graph.modules))
for group in groups:
    print(" <-> ".join(group))
"""


def test_no_module_imports_itself_through_others(tmp_path):
    pytest.importorskip("grimp")
    # grimp reads one folder per package: lay out the installed tree as the wheel has it.
    view = tmp_path / "rankact"
    view.mkdir()
    for entry in (ROOT / "rankact").iterdir():
        os.symlink(entry, view / entry.name)
    for folder in ("agent", "tools", "retrieval", "alignment"):
        os.symlink(ROOT / folder, view / folder)
    done = subprocess.run([sys.executable, "-c", SCC], cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=300)
    assert done.returncode == 0, done.stderr
    count, *cycles = done.stdout.splitlines()
    assert int(count) > 100  # the whole tree was read, not only rankact/
    assert cycles == []
