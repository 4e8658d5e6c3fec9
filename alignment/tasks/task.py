"""Task files: one JSON object per line, `{"id", "question", "answers": [...], "metadata": {}}`.

`answers` (gold answers) is optional: collection works without it; evaluation and the
simulated annotator need it. `answer` (a single string) is accepted as an alias.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from rankact.alignment.errors import TaskFileError


class Task(BaseModel):
    id: str = ""
    question: str = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "answer" in data and "answers" not in data:
            data = dict(data)
            answer = data.pop("answer")
            data["answers"] = answer if isinstance(answer, list) else [answer]
        return data

    @model_validator(mode="after")
    def _default_id(self) -> Task:
        if not self.id:  # stable id from the question, so reruns resume on the same ids
            self.id = hashlib.sha256(self.question.encode()).hexdigest()[:16]
        return self


def load_tasks(path: str | Path) -> list[Task]:
    """The tasks of a JSON Lines file; anything else in it is one `TaskFileError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"task file not found: {path}")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        raise TaskFileError(f"cannot read task file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TaskFileError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); "
                            "save the task file as UTF-8") from None
    tasks: list[Task] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tasks.append(Task.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path}:{number}: not a valid task (not JSON: {exc.msg})") from None
        except RecursionError:
            raise TaskFileError(f"{path}:{number}: not a valid task (JSON nested too deeply)") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the line"
            raise TaskFileError(f"{path}:{number}: not a valid task ({where}: {first['msg']})") from None
    if not tasks:
        raise TaskFileError(f"{path}: no tasks in file")
    return tasks


def write_tasks(tasks: list[Task], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(task.model_dump_json() + "\n" for task in tasks)
