"""`read_file`: read a UTF-8 text file inside one root folder, and nothing outside it.

Refuses absolute paths, any `..` component, and anything whose resolved path (symlinks
followed) is not inside the resolved root. Error messages only ever name paths relative
to the root, so a refusal leaks nothing about the rest of the file system; every OS error
(a symlink loop, a name too long, no permission, an I/O error) is a `FileAccessRefused`
giving the reason without the operating system's message, which names the absolute path.
The file opened is the resolved path that was checked; a symlink swapped in between the
check and the open by another process is the remaining (local-attacker-only) gap.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from pydantic import BaseModel, ConfigDict, Field

from rankact.tools.base import Tool, ToolExecutionError

_LISTING_LIMIT = 20


def _shown(path: str, limit: int = 200) -> str:
    """The path as the model gave it (relative), cut short if it is absurdly long."""
    return repr(path) if len(path) <= limit else repr(path[:limit]) + f"... ({len(path)} characters)"


def _reason(exc: BaseException) -> str:
    """Why an OS call failed, without the file name (OSError's str() carries the absolute path)."""
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
        return "a symlink loop"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return type(exc).__name__


class FileAccessRefused(ToolExecutionError):
    """The path is outside the root, or not a readable text file."""


class ReadFileArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="path of the file, relative to the root folder, e.g. notes/todo.txt")


class ReadFileTool(Tool):
    name = "read_file"
    description = "Read a text file from the working folder, given its relative path."
    args_model = ReadFileArgs

    def __init__(self, root: str | Path, max_bytes: int = 100_000, timeout: float | None = 10.0):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"read_file root is not a folder: {root}")
        self.root = root.resolve()
        self.max_bytes = max_bytes
        self.timeout = timeout

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def resolve_path(self, path: str) -> Path:
        """The checked, resolved path for `path`, or FileAccessRefused."""
        text = path.strip()
        if not text:
            raise FileAccessRefused("empty path: give a path relative to the root folder")
        if "\x00" in text:
            raise FileAccessRefused("path contains a NUL character")
        if (PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()
                or text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text)):
            raise FileAccessRefused(f"absolute paths are not allowed ({text!r}); give a path relative to the root")
        parts = re.split(r"[\\/]+", text)
        if ".." in parts:
            raise FileAccessRefused(f"'..' is not allowed in paths ({text!r})")
        try:
            resolved = (self.root / text).resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            raise FileAccessRefused(f"cannot open {_shown(text)}: {_reason(exc)}") from None
        if not resolved.is_relative_to(self.root):
            raise FileAccessRefused(f"{text!r} leads outside the root folder (symlink)")
        return resolved

    def _listing(self, folder: Path) -> str:
        try:
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
        except OSError:
            return ""
        shown = ", ".join(names[:_LISTING_LIMIT]) + (", ..." if len(names) > _LISTING_LIMIT else "")
        return f"; files in {self._relative(folder)!r}: {shown or '(none)'}"

    def run(self, path: str) -> str:
        resolved = self.resolve_path(path)
        try:
            return self._read(resolved, path.strip())
        except OSError as exc:  # never the exception's own text: it names the absolute path
            raise FileAccessRefused(f"cannot read {_shown(path.strip())}: {_reason(exc)}") from None

    def _read(self, resolved: Path, shown: str) -> str:
        if not resolved.exists():
            parent = resolved.parent
            # only list a folder that is itself inside the root
            hint = self._listing(parent) if parent.is_dir() and parent.is_relative_to(self.root) else ""
            raise FileAccessRefused(f"no such file: {shown!r}{hint}")
        if resolved.is_dir():
            raise FileAccessRefused(f"{shown!r} is a folder, not a file{self._listing(resolved)}")
        if not resolved.is_file():  # FIFOs, sockets, devices: reading could block or never end
            raise FileAccessRefused(f"{shown!r} is not a regular file")
        with open(resolved, "rb") as fh:
            data = fh.read(self.max_bytes + 1)
        truncated = len(data) > self.max_bytes
        data = data[: self.max_bytes]
        if b"\x00" in data[:8192]:
            raise FileAccessRefused(f"{shown!r} is a binary file, not text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # a cut through a multi-byte character at the size limit is not binary
            if truncated and exc.start >= len(data) - 3:
                text = data[: exc.start].decode("utf-8", errors="strict")
            else:
                raise FileAccessRefused(f"{shown!r} is not UTF-8 text") from None
        if truncated:
            text += f"\n[truncated: only the first {self.max_bytes} bytes are shown]"
        return text
