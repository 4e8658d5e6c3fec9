"""One error tree: every error class a user can cause derives from `RankactError`, and the
command line prints any of them as one line."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from rankact.errors import RankactError

# Every layer: tools and retrieval derive from the root too (rankact.errors imports nothing).
PRODUCT_PACKAGES = ["rankact.tools", "rankact.retrieval", "rankact.agent", "rankact.alignment"]


def _exception_classes(package: str) -> list[type[BaseException]]:
    found = []
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


@pytest.mark.parametrize("package", PRODUCT_PACKAGES)
def test_every_error_class_derives_from_one_base(package):
    classes = _exception_classes(package)
    assert classes  # the walk found the error classes
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, RankactError)]
    assert outside == []


def test_the_lower_layers_errors_are_branches_of_the_root():
    """tools/ and retrieval/ derive from the root without naming a layer above them: the root
    module imports nothing of rankact, so the CLI catches one class."""
    import subprocess
    import sys

    from rankact.retrieval.errors import RetrievalError
    from rankact.tools.base import ToolError

    assert issubclass(ToolError, RankactError) and issubclass(RetrievalError, RankactError)
    code = "import sys, rankact.errors; print(sorted(m for m in sys.modules if m.startswith('rankact')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['rankact', 'rankact.errors']"


def test_the_tree_is_drawn_in_the_base_modules_docstring():
    from rankact import errors

    doc = errors.__doc__
    for name in ("RankactError", "ModelLoadError", "BackendError", "ParseError", "AgentSetupError",
                 "ToolError", "RetrievalError"):
        assert name in doc, name


@pytest.mark.parametrize("error", ["RankactError", "RetrievalError", "ToolError", "ParseError"])
def test_the_cli_prints_each_as_one_line(error, monkeypatch, capsys):
    from rankact.agent.parser import ParseError
    cli_main = importlib.import_module("rankact.cli.main")
    from rankact.retrieval.errors import RetrievalError
    from rankact.tools.base import ToolError

    cls = {"RankactError": RankactError, "RetrievalError": RetrievalError, "ToolError": ToolError,
           "ParseError": ParseError}[error]

    def boom(*args, **kwargs):
        raise cls("something the user did\nwith a second line")

    monkeypatch.setattr(cli_main.cli, "main", boom)
    with pytest.raises(SystemExit) as info:
        cli_main.main(["ask", "q"])
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: something the user did with a second line"]


def test_usage_errors_are_one_line(capsys):
    from rankact.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["align", "dpo", "--no-such-option"])
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--no-such-option" in lines[0], lines
