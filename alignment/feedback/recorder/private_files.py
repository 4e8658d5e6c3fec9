"""Files in a folder someone else might write to: the spool's folder must be ours and private,
and its files are opened without following a symlink (`O_NOFOLLOW`) and must be regular files
of ours with one link, so a link planted by another user is never read, truncated nor
appended to (its lines would otherwise be sent with the app's token, or the file emptied)."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rankact.alignment.errors import RecorderError

_CHUNK = 1 << 20
# Never follow a symlink; a planted FIFO must not block the open.
_SAFE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class SpoolFolderError(RecorderError, OSError):
    """A spool folder or file that others could have planted or can tamper with (an OSError too,
    so it is handled where any other file error of the spool is)."""


def private_folder(folder: Path) -> None:
    """Make `folder` (0700) or check that it is ours and private (see the module docstring)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise SpoolFolderError(f"{folder} is a symlink; give the real folder")
    if not stat.S_ISDIR(info.st_mode):
        raise SpoolFolderError(f"{folder} is not a folder")
    if info.st_uid != os.geteuid():
        raise SpoolFolderError(f"{folder} belongs to another user (uid {info.st_uid})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise SpoolFolderError(f"{folder} can be written by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                               "use a private folder (chmod 700)")


def open_own(path: Path, flags: int, *, create: bool = False) -> int:
    """Open `path` without following a symlink, creating it (0600) when asked, and check that it
    is a regular file of ours with one link (not a hard link to someone else's file)."""
    fd = -1
    if create:
        try:
            fd = os.open(path, flags | _SAFE | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
    if fd < 0:
        try:
            fd = os.open(path, flags | _SAFE)
        except OSError as exc:
            if os.path.islink(path):
                raise SpoolFolderError(f"{path} is a symlink; the spool does not follow links") from exc
            raise
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode) else
               f"belongs to another user (uid {info.st_uid})" if info.st_uid != os.geteuid() else
               "has other hard links" if info.st_nlink != 1 else None)
    if problem:
        os.close(fd)
        raise SpoolFolderError(f"{path} {problem}; the spool does not use it")
    os.set_blocking(fd, True)
    return fd


def read_own(path: Path) -> bytes:
    fd = open_own(path, os.O_RDONLY)
    try:
        size, chunks, at = os.fstat(fd).st_size, [], 0
        while at < size:
            chunk = os.pread(fd, min(_CHUNK, size - at), at)
            if not chunk:
                break
            chunks.append(chunk)
            at += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@contextmanager
def new_file(path: Path) -> Iterator[Any]:
    """A fresh file at `path` (a leftover from a crash is removed, never followed), synced on exit."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE, 0o600)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as out:
        yield out
        out.flush()
        os.fsync(out.fileno())
