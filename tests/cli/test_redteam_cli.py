"""Red team for the command line (issue 15, failure 10): every bad input a careless user or
an attacker can type ends with exactly one `error: ...` line on stderr, a non-zero exit
status and no traceback, across every command. Cheap cases only: no model is loaded (a
model path that does not exist, or a scripted model), nothing waits on the network.

Each case is `(id, argv)`; `{x}` in an argument is a prepared path from `BAD_FILES`. The
six causes the issue found printing tracebacks are marked `# issue 15`.
"""
from __future__ import annotations

import json
import sqlite3

import pytest

from rankact.cli.main import main

# name -> how to make it under tmp_path (a callable taking the path)


def _text(content: str | bytes):
    def make(path):
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return make


def _dir(path):
    path.mkdir()


def _good_db(path):
    from rankact.alignment.feedback.collection.sample_data import load_sample_data
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    with TrajectoryStore(f"sqlite:///{path}") as store:
        load_sample_data(store)
        store.create_annotator("alice")


def _foreign_db(path):
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE questions (x)")


def _script(outputs):
    return _text(json.dumps(outputs))


DEEP = "[" * 100_000 + "]" * 100_000
TASK = json.dumps({"id": "t1", "question": "What is 2+2?", "answers": ["4"]}) + "\n"
BAD_FILES = {
    "missing": None,  # never made
    "dir": _dir,
    "empty": _text(""),
    "blank": _text("\n  \n"),
    "latin1": _text('{"question": "caf\xe9"}\n'.encode("latin-1")),  # issue 15: not UTF-8
    "binary": _text(bytes(range(256)) * 4),
    "deep": _text(DEEP + "\n"),  # issue 15: 100k-deep JSON
    "deep_obj": _text('{"a":' * 100_000 + "1" + "}" * 100_000 + "\n"),
    "garbage": _text("{not json\n"),
    "list": _text("[1, 2]\n"),
    "string": _text('"a question"\n'),
    "noquestion": _text('{"id": "x", "answers": ["4"]}\n'),
    "emptyquestion": _text('{"question": ""}\n'),
    "badanswers": _text('{"question": "q", "answers": 4}\n'),
    "nan": _text('{"question": "q", "metadata": {"x": NaN}}\n'),
    "surrogate": _text('{"question": "\\ud800"}\n'),
    "task": _text(TASK),
    "tasks2": _text(TASK + json.dumps({"id": "t2", "question": "What is 3+3?", "answers": ["6"]}) + "\n"),
    "textfile": _text("hello\n"),
    "randomdb": _text(bytes(range(256)) * 16),  # issue 15: --db at a non-SQLite file
    "gooddb": _good_db,
    "foreigndb": _foreign_db,
    "script_latin1": _text(b'["caf\xe9"]'),
    "script_deep": _text(DEEP),
    "script_garbage": _text("[not json"),
    "script_object": _text('{"a": 1}'),
    "script_ints": _text("[1, 2, 3]"),
    "script_ok": _script(["Thought: easy\nFinal Answer: 4"] * 4),
    "script_none": _text("[]"),
    # one step, then the script runs out: the backend fails mid-run
    "script_short": _script(['Thought: add\nAction: calculator\nAction Input: {"expression": "1+1"}']),
    "traj_garbage": _text("{"),
    "traj_deep": _text(DEEP),
    "traj_latin1": _text(b'{"question": "caf\xe9"}'),
    "traj_list": _text("[]"),
    "pairs_latin1": _text(b'{"prompt": "caf\xe9"}\n'),
    "pairs_deep": _text(DEEP + "\n"),
    "pairs_garbage": _text("{nope\n"),
    "pairs_empty": _text(""),
    "pairs_list": _text("[1]\n"),
}

MISSING_MODEL = "/nonexistent/model"
UNDER_FILE = "{textfile}/sub/x.db"  # issue 15: a database path that cannot be written
READ_ONLY = "sqlite:///file:{gooddb}?mode=ro&uri=true"  # a database this process may not write

TASK_FILES = ["missing", "dir", "empty", "blank", "latin1", "binary", "deep", "deep_obj", "garbage", "list",
              "string", "noquestion", "emptyquestion", "badanswers", "nan", "surrogate"]
BAD_DBS = ["{randomdb}", "{textfile}", UNDER_FILE, "{dir}", "{foreigndb}", "", "sqlite://", ":memory:",
           "nosuchscheme://x", "mysql+nosuchdriver://u@h/db"]
READ_DBS = ["{missing}", "{randomdb}", "{textfile}", "{dir}", "{foreigndb}", "{empty}", "", "nosuchscheme://x"]

CASES: list[tuple[str, list[str]]] = []


def case(name: str, *argv: str) -> None:
    CASES.append((name, list(argv)))


# top level
case("unknown-command", "frobnicate")
case("unknown-option", "--frobnicate")
case("unknown-subcommand", "feedback", "frobnicate")

# collect: task files, databases, options
for bad in TASK_FILES:
    case(f"collect-tasks-{bad}", "collect", f"{{{bad}}}", "--db", "{new}", "--model", MISSING_MODEL)
for i, db in enumerate(BAD_DBS):
    case(f"collect-db-{i}", "collect", "{task}", "--db", db, "--model", "scripted:{script_ok}")
case("collect-db-readonly", "collect", "{task}", "--db", READ_ONLY, "--model", "scripted:{script_ok}")
case("collect-model-missing", "collect", "{task}", "--db", "{new}", "--model", MISSING_MODEL)
case("collect-model-empty", "collect", "{task}", "--db", "{new}", "--model", "")
case("collect-model-dir", "collect", "{task}", "--db", "{new}", "--model", "{dir}")
case("collect-model-textfile", "collect", "{task}", "--db", "{new}", "--model", "{textfile}")
for script in ("missing", "script_latin1", "script_deep", "script_garbage", "script_object", "script_ints", "dir"):
    case(f"collect-scripted-{script}", "collect", "{task}", "--db", "{new}", "--model", f"scripted:{{{script}}}")
case("collect-samples-0", "collect", "{task}", "--samples", "0", "--db", "{new}")
case("collect-samples-text", "collect", "{task}", "--samples", "many", "--db", "{new}")
case("collect-temperature-negative", "collect", "{task}", "--temperature", "-1", "--db", "{new}")
case("collect-k-without-temperature", "collect", "{task}", "--samples", "2", "--temperature", "0", "--db", "{new}",
     "--model", "scripted:{script_ok}")
case("collect-max-steps-0", "collect", "{task}", "--max-steps", "0", "--db", "{new}")
case("collect-batch-size-0", "collect", "{task}", "--batch-size", "0", "--db", "{new}")
case("collect-retries-negative", "collect", "{task}", "--retries", "-1", "--db", "{new}")
case("collect-retry-wait-negative", "collect", "{task}", "--retry-wait", "-1", "--db", "{new}")
case("collect-engine-bogus", "collect", "{task}", "--engine", "bogus", "--db", "{new}", "--model", MISSING_MODEL)
case("collect-seed-huge", "collect", "{task}", "--seed", str(2**70), "--db", "{new}", "--model", "scripted:{script_ok}")
case("collect-no-tasks", "collect")
case("collect-index-missing", "collect", "{task}", "--db", "{new}", "--index", "{missing}",
     "--model", "scripted:{script_ok}")

# feedback
for i, db in enumerate(READ_DBS):
    case(f"stats-db-{i}", "feedback", "stats", "--db", db)
    case(f"export-db-{i}", "feedback", "export", "--out", "{new_out}", "--db", db)
    case(f"simulate-db-{i}", "feedback", "simulate", "--db", db)
for i, db in enumerate(BAD_DBS):
    case(f"demo-data-db-{i}", "feedback", "demo-data", "--db", db)
case("simulate-db-readonly", "feedback", "simulate", "--db", READ_ONLY)
case("demo-data-db-readonly", "feedback", "demo-data", "--db", "sqlite:///file:{randomdb}?mode=ro&uri=true")
case("export-out-dir", "feedback", "export", "--out", "{dir}", "--db", "{gooddb}")  # issue 15
case("export-out-under-file", "feedback", "export", "--out", "{textfile}/x.jsonl", "--db", "{gooddb}")
case("export-out-empty", "feedback", "export", "--out", "", "--db", "{gooddb}")
case("export-format-bogus", "feedback", "export", "--out", "{new_out}", "--format", "bogus", "--db", "{gooddb}")
case("export-no-out", "feedback", "export", "--db", "{gooddb}")
case("simulate-criteria-bogus", "feedback", "simulate", "--criteria", "bogus", "--db", "{gooddb}")
case("simulate-name-empty", "feedback", "simulate", "--name", "", "--db", "{gooddb}")
case("simulate-name-long", "feedback", "simulate", "--name", "x" * 500, "--db", "{gooddb}")

# admin
for i, db in enumerate(BAD_DBS):
    case(f"create-annotator-db-{i}", "admin", "create-annotator", "bob", "--db", db)
case("create-annotator-db-readonly", "admin", "create-annotator", "bob", "--db", READ_ONLY)
case("create-annotator-duplicate", "admin", "create-annotator", "alice", "--db", "{gooddb}")
case("create-annotator-empty-name", "admin", "create-annotator", "", "--db", "{gooddb}")
case("create-annotator-long-name", "admin", "create-annotator", "x" * 500, "--db", "{gooddb}")
case("create-annotator-no-name", "admin", "create-annotator", "--db", "{gooddb}")
for i, db in enumerate(READ_DBS):
    case(f"admin-list-db-{i}", "admin", "list", "--db", db)

# eval
for bad in TASK_FILES:
    case(f"eval-tasks-{bad}", "eval", f"{{{bad}}}", "--model", MISSING_MODEL)
case("eval-preset-bogus", "eval", "hotpot:bogus", "--model", MISSING_MODEL, "--data", "{dir}")
case("eval-preset-no-data", "eval", "hotpot:dev", "--model", MISSING_MODEL, "--data", "{missing}")
case("eval-no-tasks", "eval", "--model", MISSING_MODEL)
case("eval-refusal-qa-preset", "eval", "hotpot:dev", "--refusal")
case("eval-refusal-tasks-missing", "eval", "{missing}", "--refusal")
case("eval-refusal-tasks-blank", "eval", "{blank}", "--refusal")
case("eval-refusal-split-bogus", "eval", "--refusal", "--split", "bogus")
case("eval-limit-0", "eval", "{task}", "--limit", "0")
case("eval-model-missing", "eval", "{task}", "--model", MISSING_MODEL)
case("eval-scripted-garbage", "eval", "{task}", "--model", "scripted:{script_garbage}")
case("eval-scripted-deep", "eval", "{task}", "--model", "scripted:{script_deep}")
case("eval-out-dir", "eval", "{task}", "--model", "scripted:{script_ok}", "--out", "{dir}")
case("eval-out-under-file", "eval", "{task}", "--model", "scripted:{script_ok}", "--out", "{textfile}/r.json")
case("eval-index-missing", "eval", "{task}", "--model", "scripted:{script_ok}", "--index", "{missing}")

# generate and ask
case("generate-model-missing", "generate", "hello", "--model", MISSING_MODEL)
case("generate-scripted-latin1", "generate", "hello", "--model", "scripted:{script_latin1}")
case("generate-scripted-deep", "generate", "hello", "--model", "scripted:{script_deep}")
case("generate-scripted-empty", "generate", "hello", "--model", "scripted:{empty}")
case("generate-engine-bogus", "generate", "hello", "--model", MISSING_MODEL, "--engine", "bogus")
case("generate-max-tokens-0", "generate", "hello", "--max-tokens", "0")
case("generate-temperature-negative", "generate", "hello", "--temperature", "-2")
case("generate-top-p-2", "generate", "hello", "--top-p", "2", "--model", "scripted:{script_ok}")
case("generate-no-prompt", "generate", "--model", MISSING_MODEL)
case("ask-model-missing", "ask", "what?", "--model", MISSING_MODEL)
case("ask-scripted-garbage", "ask", "what?", "--model", "scripted:{script_garbage}")
case("ask-max-steps-0", "ask", "what?", "--max-steps", "0")
case("ask-k-0", "ask", "what?", "--k", "0")
case("ask-index-missing", "ask", "what?", "--model", "scripted:{script_ok}", "--index", "{missing}")
case("ask-empty-question", "ask", "", "--model", "scripted:{script_ok}")
case("ask-scripted-no-outputs", "ask", "what?", "--model", "scripted:{script_none}")  # round 3, N19: exit 0
case("ask-json-backend-failed", "ask", "what?", "--json", "--model", "scripted:{script_short}")  # round 3: exit 0
case("ask-live-backend-failed", "ask", "what?", "--model", "scripted:{script_short}")
# red team round 3: an MCP command line shlex cannot split (was a 51-line ValueError traceback)
case("ask-mcp-unterminated-quote", "ask", "what?", "--model", "scripted:{script_ok}", "--mcp", "python 'x")
case("ask-mcp-bad-option", "ask", "what?", "--model", "scripted:{script_ok}", "--mcp", "max_tools=lots:python x.py")

# index (the folder checks of a built index have their own tests; these are the options)
case("index-build-sources-missing", "index", "build", "{missing}", "--out", "{new_out}")
case("index-build-chunk-0", "index", "build", "{textfile}", "--out", "{new_out}", "--chunk-tokens", "0")
case("index-build-overlap", "index", "build", "{textfile}", "--out", "{new_out}", "--chunk-tokens", "8",
     "--overlap", "50")
case("index-build-embedder-bogus", "index", "build", "{textfile}", "--out", "{new_out}", "--embedder", "{missing}")
case("index-build-out-file", "index", "build", "{textfile}", "--out", "{textfile}", "--embedder", "hashing")
case("index-search-k-0", "index", "search", "{dir}", "q", "--k", "0")
case("index-search-mode-bogus", "index", "search", "{dir}", "q", "--mode", "bogus")

# serve (only inputs that fail before the server would start)
for i, db in enumerate(["{randomdb}", UNDER_FILE, "{foreigndb}", "nosuchscheme://x", ""]):
    case(f"serve-db-{i}", "serve", "--db", db)
case("serve-port-0", "serve", "--port", "0")
case("serve-port-big", "serve", "--port", "70000")
case("serve-lease-0", "serve", "--lease", "0", "--db", "{gooddb}")

# score
case("score-trajectory-missing", "score", "{dir}", "{missing}")
case("score-trajectory-garbage", "score", "{dir}", "{traj_garbage}")
case("score-trajectory-deep", "score", "{dir}", "{traj_deep}")
case("score-trajectory-latin1", "score", "{dir}", "{traj_latin1}")
case("score-trajectory-list", "score", "{dir}", "{traj_list}")
case("score-trajectory-dir", "score", "{dir}", "{dir}")
case("score-model-missing", "score", "{missing}", "{traj_list}")

# align: input files and options checked before any model loads
for bad in ("missing", "dir", "pairs_latin1", "pairs_deep", "pairs_garbage", "pairs_empty", "pairs_list"):
    case(f"reward-pairs-{bad}", "align", "reward", "--pairs", f"{{{bad}}}", "--out", "{new_out}",
         "--base", MISSING_MODEL)
    case(f"dpo-pairs-{bad}", "align", "dpo", "--pairs", f"{{{bad}}}", "--out", "{new_out}", "--base", MISSING_MODEL)
    case(f"reward-eval-pairs-{bad}", "align", "reward-eval", "{dir}", "--pairs", f"{{{bad}}}")
case("reward-range-bogus", "align", "reward", "--pairs", "{pairs_list}", "--range", "a:b", "--out", "{new_out}")
case("reward-lr-negative", "align", "reward", "--pairs", "{pairs_list}", "--lr", "-1", "--out", "{new_out}")
case("dpo-beta-negative", "align", "dpo", "--db", "{gooddb}", "--beta", "-1", "--out", "{new_out}")
case("dpo-loss-bogus", "align", "dpo", "--db", "{gooddb}", "--loss", "bogus", "--out", "{new_out}")
for i, db in enumerate(["{missing}", "{randomdb}", "{foreigndb}", "nosuchscheme://x"]):
    case(f"sft-db-{i}", "align", "sft", "--db", db, "--out", "{new_out}", "--base", MISSING_MODEL)
    case(f"grpo-db-{i}", "align", "grpo", "--db", db, "--out", "{new_out}", "--base", MISSING_MODEL)
case("sft-no-data", "align", "sft", "--out", "{new_out}", "--base", MISSING_MODEL)
for bad in ("missing", "latin1", "deep", "garbage"):
    case(f"rounds-tasks-{bad}", "align", "rounds", "--tasks", f"{{{bad}}}", "--heldout", "{task}",
         "--out", "{new_out}", "--base", MISSING_MODEL)
    case(f"ppo-tasks-{bad}", "align", "ppo", "--tasks", f"{{{bad}}}", "--reward", "{dir}", "--out", "{new_out}",
         "--base", MISSING_MODEL)
case("rounds-heldout-missing", "align", "rounds", "--tasks", "{task}", "--heldout", "{missing}",
     "--out", "{new_out}", "--base", MISSING_MODEL)
case("ppo-reward-missing", "align", "ppo", "--tasks", "{task}", "--reward", "{missing}", "--out", "{new_out}",
     "--base", MISSING_MODEL)

# demo
case("demo-samples-0", "demo", "--samples", "0")
case("demo-method-bogus", "demo", "--method", "bogus")
case("demo-out-file", "demo", "--out", "{textfile}", "--model", MISSING_MODEL)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam")
    paths = {}
    for name, make in BAD_FILES.items():
        paths[name] = root / name
        if make is not None:
            make(paths[name])
    return paths


def _fill(arg: str, files, tmp_path) -> str:
    values = {name: str(path) for name, path in files.items()}
    values["new"] = str(tmp_path / "fresh.db")
    values["new_out"] = str(tmp_path / "out")
    return arg.format(**values) if "{" in arg else arg


def test_there_are_over_a_hundred_cases():
    assert len(CASES) > 100 and len({name for name, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "argv"), CASES, ids=[name for name, _ in CASES])
def test_a_bad_input_is_one_error_line(name, argv, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a case that falls back to the default ./rankact.db writes here
    import uvicorn

    def no_server(*_args, **_kwargs):
        raise AssertionError("the input was accepted: the server would start")

    monkeypatch.setattr(uvicorn, "run", no_server)
    monkeypatch.setenv("RANKACT_DATA", str(files["missing"]))
    args = [_fill(a, files, tmp_path) for a in argv]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code not in (0, None), f"exit 0 on an error; stderr: {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {err!r}"


# The six causes of tracebacks the issue found, with what the one line says.
ISSUE_CAUSES = [
    (["feedback", "stats", "--db", "{randomdb}"], "file is not a database"),
    (["admin", "create-annotator", "bob", "--db", UNDER_FILE], "cannot create its folder"),
    (["admin", "create-annotator", "bob", "--db", READ_ONLY], "readonly database"),
    (["collect", "{latin1}", "--db", "{new}"], "latin1:1: not UTF-8 text (byte 0xe9)"),
    (["collect", "{deep}", "--db", "{new}"], "deep:1: not a valid task (JSON nested too deeply)"),
    (["feedback", "export", "--out", "{dir}", "--db", "{gooddb}"], "it is a folder"),
]


@pytest.mark.parametrize(("argv", "message"), ISSUE_CAUSES, ids=[" ".join(a[:2]) + f"-{i}"
                                                                 for i, (a, _) in enumerate(ISSUE_CAUSES)])
def test_the_issue_causes_say_what_is_wrong(argv, message, files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([_fill(a, files, tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err


def test_a_failed_export_leaves_no_partial_file(files, tmp_path, capsys):
    target = tmp_path / "pairs.jsonl"
    target.mkdir()
    with pytest.raises(SystemExit):
        main(["feedback", "export", "--out", str(target), "--db", str(files["gooddb"])])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_a_read_only_database_is_refused_before_any_work(files, tmp_path, capsys):
    """`feedback simulate` on a database it may not write: refused at open, nothing ranked."""
    from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore

    with pytest.raises(SystemExit) as exit_info:
        main(["feedback", "simulate", "--db", READ_ONLY.format(gooddb=files["gooddb"])])
    assert exit_info.value.code == 2 and "readonly" in capsys.readouterr().err
    with TrajectoryStore(str(files["gooddb"]), create=False) as store:
        assert store.rankings() == []


def test_ask_json_still_prints_the_failed_run_before_its_error(files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", "what?", "--json", "--model", f"scripted:{files['script_short']}"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and json.loads(out)["status"] == "error"
    assert err.startswith("error: the model's backend failed: script exhausted")


def test_ask_on_a_server_returning_token_id_minus_one_is_one_line(tiny_model_dir, capsys):
    """Round 3, N10: id -1 from a token server printed a 61-line tokenizer traceback."""
    from served_stub import Reply, ServedStub

    stub = ServedStub([], default=Reply(ids=[5, -1], eos=True))
    with stub as url, pytest.raises(SystemExit) as exit_info:
        main(["ask", "what?", "--model", url, "--tokenizer", str(tiny_model_dir), "--token-api", "vllm"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert len(lines) == 1 and "token id -1 is outside the tokenizer's vocabulary" in lines[0]
