"""rankact installs exactly one import name, `rankact`: an application's own `tools.py`,
`agent.py`, `retrieval.py` or `alignment.py` never collides with ours, and a built wheel holds
the same package tree the editable install maps."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"rankact": "rankact", "rankact.agent": "agent", "rankact.tools": "tools",
           "rankact.retrieval": "retrieval", "rankact.alignment": "alignment"}


def _packages_in_tree() -> set[str]:
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_pyproject_lists_every_package_folder_and_maps_the_four_folders():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == FOLDERS
    assert set(setuptools["packages"]) == _packages_in_tree()


def _scratch_app(tmp_path: Path) -> Path:
    """An application folder whose own modules carry the names rankact's folders have."""
    app = tmp_path / "app"
    app.mkdir()
    for name in ("tools", "agent", "retrieval", "alignment"):
        (app / f"{name}.py").write_text(f"APP_MODULE = {name!r}\n")
    (app / "replies.json").write_text(json.dumps([
        'Thought: use my tool\nAction: shout\nAction Input: {"text": "hi"}',
        "Thought: I now know the answer\nFinal Answer: HI",
    ]))
    return app


def _run(code: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_app_with_its_own_tools_py_imports_rankact_and_its_own_modules(tmp_path):
    app = _scratch_app(tmp_path)
    out = _run(
        "import tools, agent, retrieval, alignment\n"
        "from rankact import build_agent, tool, load_llm\n"
        "from rankact.tools.mcp import MCPToolset\n"
        "print(tools.APP_MODULE, agent.APP_MODULE, retrieval.APP_MODULE, alignment.APP_MODULE)\n"
        "@tool\n"
        "def shout(text: str) -> str:\n"
        "    '''Shout a text.\n\n    Args:\n        text: what to shout\n    '''\n"
        "    return text.upper()\n"
        "agent_ = build_agent(load_llm('scripted:replies.json'), tools=[shout])\n"
        "t = agent_.run('Shout hi')\n"
        "print(t.status, t.final_answer, t.steps[0].observation)\n",
        cwd=app)
    lines = out.splitlines()
    assert lines[0] == "tools agent retrieval alignment"
    assert lines[1] == "finished HI HI"


def test_every_public_name_resolves():
    import rankact

    assert set(rankact.__all__) == set(rankact._EXPORTS)
    for name in rankact.__all__:
        assert getattr(rankact, name) is not None


def test_importing_rankact_is_lazy(tmp_path):
    out = _run("import sys, rankact; print(sorted(m for m in sys.modules if m.startswith('rankact')));"
               "print('torch' in sys.modules)", cwd=tmp_path)
    assert out.splitlines() == ["['rankact']", "False"]


@pytest.mark.slow
def test_a_built_wheel_installs_one_name_and_runs_the_cli(tmp_path):
    # Built from a copy of the checkout's files: setuptools keeps a build/ folder in the source
    # tree, and a stale one would hide a module that no longer exists.
    source = tmp_path / "source"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("rankact-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"rankact", next(t for t in tops if t.endswith(".dist-info"))}
    for needed in ("rankact/agent/llm/default_adapter/adapter_model.safetensors",
                   "rankact/alignment/feedback/service/static/index.html",
                   "rankact/alignment/tasks/data/benign_requests.jsonl", "rankact/cli/main.py"):
        assert needed in names, needed
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    app = _scratch_app(tmp_path)
    env = {"PYTHONPATH": str(target)}
    out = _run("import rankact, rankact.agent.loop, tools; print(rankact.__file__); print(tools.APP_MODULE)",
               cwd=app, env=env)
    assert out.splitlines() == [str(target / "rankact" / "__init__.py"), "tools"]
    done = subprocess.run([sys.executable, str(target / "bin" / "rankact"), "--help"], check=False, cwd=app,
                          capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)
    assert done.returncode == 0 and "rankact" in done.stdout and "ask" in done.stdout, done.stderr
