"""Writing a file a person named (`--out`): whole or not at all, and any failure one line.

The text goes to `NAME.partial` first and replaces `NAME` only when complete, so a failed
write never leaves half a file under the real name (nor the `.partial` beside it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from rankact.alignment.errors import OutputFileError


def check_target(out: str | Path) -> Path:
    """Say now, before a long job, what would stop `out` from being written later."""
    out = Path(out)
    if not out.name or str(out) in (".", ".."):
        raise OutputFileError(f"not a file name: {str(out)!r}")
    if out.is_dir():
        raise OutputFileError(f"cannot write {out}: it is a folder; name a file inside it")
    for folder in out.parents:
        if folder.exists():
            if not folder.is_dir():
                raise OutputFileError(f"cannot write {out}: {folder} is a file, not a folder")
            break
    return out


def write_lines(out: str | Path, lines: Iterable[str]) -> int:
    """Write each line (a newline added) to `out`; returns how many were written."""
    out = check_target(out)
    partial = out.with_name(out.name + ".partial")
    count = 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
                count += 1
        partial.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise OutputFileError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    return count


def write_text(out: str | Path, text: str) -> None:
    """`write_lines` for one document."""
    write_lines(out, [text.removesuffix("\n")])
