"""The documentation against the tree: the layout tables name every package folder and only
paths that exist, and each package docstring's list of modules names only modules that exist
(and, where it is a module table, all of them). A move that forgets the docs fails here."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("rankact", "agent", "tools", "retrieval", "alignment")  # the folders that install under rankact
README = ROOT / "README.md"
LAYOUT = ROOT / "docs" / "layout.md"


def package_dirs() -> set[str]:
    """Every package folder of the layers, as 'agent/llm/'."""
    found = set()
    for layer in LAYERS:
        for init in (ROOT / layer).rglob("__init__.py"):
            found.add(init.parent.relative_to(ROOT).as_posix() + "/")
    return found


def table_after(path: Path, heading: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of each row of the first table after `heading`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    rows, seen_table = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen_table = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-", ":"} or cells[0] in ("folder", "path"):
                continue  # separator or header row
            rows.append((cells[0].strip("`"), cells[1] if len(cells) > 1 else ""))
        elif seen_table:
            break
    assert rows, f"{path.name}: no table after {heading!r}"
    return rows


def test_table_parser_reads_rows():
    rows = table_after(LAYOUT, "## Every package")
    assert ("agent/", rows[[r[0] for r in rows].index("agent/")][1]) in rows
    assert all(not first.startswith("|") for first, _ in rows)


def test_docs_layout_lists_every_package_and_only_paths_that_exist():
    listed = [first for first, _ in table_after(LAYOUT, "## Every package")]
    missing = sorted(package_dirs() - set(listed))
    assert not missing, f"docs/layout.md: add a row for each package folder: {missing}"
    gone = [p for p in listed if not (ROOT / p).exists()]
    assert not gone, f"docs/layout.md names paths that do not exist: {gone}"


def _file_names(cell: str) -> list[str]:
    """Backticked file names in a table cell: `x.py`, `x*.py`, `folder/`."""
    return [t for t in re.findall(r"`([^`\s]+)`", cell) if re.fullmatch(r"[\w*]+\.(py|jsonl)|\w+/", t)]


def test_docs_layout_names_only_files_that_exist():
    wrong = []
    for first, holds in table_after(LAYOUT, "## Every package"):
        base = ROOT / first
        folder = base if first.endswith("/") else base.parent
        for name in _file_names(holds):
            if not list(folder.glob(name.rstrip("/"))):
                wrong.append(f"{first}: {name}")
    assert not wrong, f"docs/layout.md names files that are not in the row's folder: {wrong}"


def test_readme_layout_lists_the_layers_and_their_subpackages():
    listed = [first for first, _ in table_after(README, "## Layout")]
    gone = [p for p in listed if not (ROOT / p).exists()]
    assert not gone, f"README.md's layout table names paths that do not exist: {gone}"
    # The README keeps to two levels (agent/llm/, alignment/feedback/); docs/layout.md has the rest.
    wanted = {p for p in package_dirs() if p.count("/") <= 2} | {"tests/", "bench/"}
    missing = sorted(wanted - set(listed))
    assert not missing, f"README.md's layout table: add a row for {missing}"


def _docstring_and_names(init: Path) -> tuple[str, set[str]]:
    tree = ast.parse(init.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return ast.get_docstring(tree) or "", names


def _members(package: Path) -> tuple[set[str], set[str]]:
    """(public modules, sub-packages) of a package folder."""
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    return modules, subpackages


def _docstring_tables(doc: str) -> list[tuple[str, list[str]]]:
    """(header's first cell, backticked names in each row's first cell) of each table."""
    tables, header, names = [], None, []
    for line in doc.splitlines() + [""]:
        if line.startswith("|"):
            first = line.strip("|").split("|")[0].strip()
            if header is None:
                header = first
            elif not set(first) <= {"-", ":"}:
                names += re.findall(r"`([^`]+)`", first)
        elif header is not None:
            tables.append((header, names))
            header, names = None, []
    return tables


INITS = sorted(init for layer in LAYERS for init in (ROOT / layer).rglob("__init__.py"))


@pytest.mark.parametrize("init", INITS, ids=lambda p: p.parent.relative_to(ROOT).as_posix())
def test_package_docstring_names_only_modules_that_exist(init):
    doc, own_names = _docstring_and_names(init)
    modules, subpackages = _members(init.parent)
    where = init.relative_to(ROOT).as_posix()
    tables = _docstring_tables(doc)
    for header, names in tables:
        listed = {n.rstrip("/") for n in names}
        unknown = sorted(listed - modules - subpackages)
        assert not unknown, f"{where}: its {header} table names what is not in the package: {unknown}"
        # A module table claims the whole package, a package table every sub-package.
        claimed = (modules | subpackages) if header == "module" else subpackages if header == "package" else set()
        assert not claimed - listed, f"{where}: its {header} table leaves out {sorted(claimed - listed)}"
    # Prose: a backticked lowercase name is a module, unless it is one of the package's own
    # names (an imported function), the package itself (`mcp`, the extra) or a layer's name.
    prose = "\n".join(line for line in doc.splitlines() if not line.startswith("|"))
    mentioned = {t.rstrip("/") for t in re.findall(r"`([a-z_][a-z0-9_]*/?)`", prose)}
    unknown = sorted(mentioned - modules - subpackages - own_names - set(LAYERS) - {init.parent.name})
    assert not unknown, f"{where}: its docstring names modules that are not in the package: {unknown}"


def test_docstring_check_catches_a_module_that_is_gone(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Holds `alpha` and `beta`.\n\n| module | holds |\n|---|---|\n| `alpha` | a |\n"""\n')
    (package / "alpha.py").write_text("")
    (package / "gamma.py").write_text("")
    doc, _ = _docstring_and_names(package / "__init__.py")
    modules, subpackages = _members(package)
    [(header, names)] = _docstring_tables(doc)
    assert header == "module" and names == ["alpha"]
    assert (modules | subpackages) - set(names) == {"gamma"}  # a module table that leaves one out
    prose = {t for t in re.findall(r"`([a-z_][a-z0-9_]*/?)`", doc.split("|")[0])}
    assert prose - modules == {"beta"}  # a module the prose names that does not exist


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md: at most 200 lines; move the rest to docs/"
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the docs"
    broken = [link for link in local if not (ROOT / link).exists()]
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_measured_results_name_every_bench_script():
    text = (ROOT / "docs" / "measured.md").read_text(encoding="utf-8")
    scripts = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "bench").glob("*.py"))
    missing = [s for s in scripts if f"`{s}`" not in text]
    assert not missing, f"docs/measured.md's benchmark table: add {missing}"
    gone = sorted(set(re.findall(r"`(bench/\w+\.py)`", text)) - set(scripts))
    assert not gone, f"docs/measured.md names bench scripts that do not exist: {gone}"


def test_docs_import_only_through_rankact():
    pages = [README, *sorted((ROOT / "docs").rglob("*.md"))]
    bare = re.compile(r"^\s*(from|import)\s+(agent|tools|retrieval|alignment)\b|python -m (agent|tools|retrieval|alignment)\b")
    wrong = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in pages
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if bare.search(line)]
    assert not wrong, f"imports must go through rankact.…: {wrong}"


REPO_PATH = re.compile(r"(?<![\w:./-])((?:agent|tools|retrieval|alignment|rankact|bench|tests|docs)/[\w./*-]*)")


def test_paths_the_docs_name_exist():
    """A file or folder named in the text (`alignment/recipes/default-adapter.toml`) exists;
    a path after a commit (`git show 55e4085:agent/...`) is history and is left alone."""
    wrong = []
    for page in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for span in re.findall(r"`([^`]+)`", line):
                for path in REPO_PATH.findall(span):
                    path = path.rstrip(".")
                    if not list(ROOT.glob(path.rstrip("/"))):
                        wrong.append(f"{page.relative_to(ROOT)}:{i}: {path}")
    assert not wrong, f"the docs name paths that do not exist: {wrong}"


def _resolves(dotted: str) -> bool:
    """`rankact.a.b.Name`: the longest prefix that imports, then attributes for the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_module_paths_the_docs_name_import():
    """Every `rankact.<package>.…` path in the text and code of the docs (span attributes such as
    `rankact.trajectory.id` are not modules; API pages' `:::` entries are
    checked by the strict build) names a module or object that exists."""
    wrong = []
    for page in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith(":::"):
                continue
            for dotted in set(re.findall(r"\brankact\.(?:agent|tools|retrieval|alignment|cli)(?:\.\w+)*", line)):
                if not _resolves(dotted):
                    wrong.append(f"{page.relative_to(ROOT)}:{i}: {dotted}")
    assert not wrong, f"the docs name rankact paths that do not import: {wrong}"
