"""Options several commands share, declared once."""
from __future__ import annotations

from typing import Annotated

import typer

from alignment.feedback.store_schema import DEFAULT_URL

# The trajectory store every feedback command reads and writes; its default is the store's own.
Db = Annotated[str, typer.Option("--db", help="store URL (sqlite:///FILE or postgresql://...) or a file path")]
DEFAULT_DB = DEFAULT_URL
