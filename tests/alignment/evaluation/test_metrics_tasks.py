import json

import pytest

from rankact.alignment.evaluation.metrics import exact_match, normalize_answer, token_f1
from rankact.alignment.tasks import TaskFileError, load_tasks


def test_squad_normalization():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert exact_match("the Beatles", ["Beatles"]) == 1.0
    assert exact_match(None, ["x"]) == 0.0


def test_token_f1_takes_the_best_gold():
    assert token_f1("Paris France", ["Paris", "Lyon"]) == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_task_file_errors_name_the_line(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"question": "q1", "answer": "a"}) + "\n{broken\n")
    with pytest.raises(TaskFileError, match=":2:"):
        load_tasks(path)
    path.write_text(json.dumps({"question": "q1", "answer": "a"}) + "\n")
    [task] = load_tasks(path)
    assert task.answers == ["a"] and len(task.id) == 16
