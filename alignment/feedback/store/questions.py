"""Questions of the trajectory store: the `Question` record, question ids (stable in the text,
versioned once a question is ranked), and the per-annotator order trajectories are shown in."""
from __future__ import annotations

import hashlib
import random
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from rankact.alignment.errors import StoreError


class Question(BaseModel):
    id: str
    text: str
    gold: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    trajectories: int = 0
    rankings: int = 0


def question_id_for(text: str, version: int = 1) -> str:
    """The default question id: stable in the text (the same as a Task's default id), with
    `-v<version>` from version 2 on."""
    return versioned_id(hashlib.sha256(utf8(text, "question")).hexdigest()[:16], version)


def versioned_id(question_id: str, version: int) -> str:
    """`question_id` as version `version`: ("q", 2) -> "q-v2"; ("q-v2", 3) -> "q-v3"; version 1 leaves it."""
    if version <= 1:
        return question_id
    return re.sub(r"-v\d+$", "", question_id) + f"-v{version}"


def utf8(text: str, what: str) -> bytes:
    """`text` as UTF-8; StoreError for text no database can store (a lone surrogate)."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: no database can store it
        raise StoreError(f"the {what} is not valid Unicode text ({exc.reason} at position {exc.start})") from exc


def shuffled_for(annotator: str, question_id: str, items: list[Any], key=lambda x: x) -> list[Any]:
    """Items in an order shuffled per annotator and question, the same on every load, so the
    position a trajectory is shown in cannot bias every annotator the same way."""
    seed = int.from_bytes(hashlib.sha256(f"{annotator}\0{question_id}".encode()).digest()[:8], "big")
    ordered = sorted(items, key=key)
    random.Random(seed).shuffle(ordered)
    return ordered
