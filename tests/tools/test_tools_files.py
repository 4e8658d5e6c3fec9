"""read_file: confined to its root; traversal, absolute paths and symlink escapes refused."""
from __future__ import annotations

import os

import pytest

from rankact.tools import ReadFileTool, ToolArgumentError, get_builtin
from rankact.tools.files import FileAccessRefused


@pytest.fixture
def layout(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    root = tmp_path / "root"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "todo.txt").write_text("buy milk\n")
    (root / "readme.md").write_text("# héllo\n", encoding="utf-8")
    (root / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "link_in.txt").symlink_to(root / "notes" / "todo.txt")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "dir_out").symlink_to(outside, target_is_directory=True)
    return root, outside


def test_reads_files_inside_root(layout):
    root, _ = layout
    tool = ReadFileTool(root)
    assert tool.invoke({"path": "notes/todo.txt"}).text == "buy milk\n"
    assert tool.invoke("readme.md").text == "# héllo\n"  # plain string input
    assert tool.invoke("./notes//todo.txt").text == "buy milk\n"
    assert tool.invoke("link_in.txt").text == "buy milk\n"  # a symlink that stays inside is fine


@pytest.mark.parametrize(("path", "fragment"), [
    ("../outside/secret.txt", "'..' is not allowed"),
    ("notes/../../outside/secret.txt", "'..' is not allowed"),
    ("notes\\..\\..\\outside\\secret.txt", "'..' is not allowed"),
    ("/etc/passwd", "absolute paths are not allowed"),
    ("\\\\server\\share\\x", "absolute paths are not allowed"),
    ("C:\\Windows\\win.ini", "absolute paths are not allowed"),
    ("~/.ssh/id_rsa", "absolute paths are not allowed"),
    ("link_out.txt", "leads outside the root"),
    ("dir_out/secret.txt", "leads outside the root"),
    ("", "empty path"),
    ("notes/todo.txt\x00.png", "NUL"),
])
def test_escapes_are_refused_without_leaking_contents(layout, path, fragment):
    root, outside = layout
    with pytest.raises(FileAccessRefused) as info:
        ReadFileTool(root).invoke({"path": path})
    message = str(info.value)
    assert fragment in message
    assert "TOP SECRET" not in message and str(outside) not in message and str(root) not in message


def test_absolute_path_inside_root_is_still_refused(layout):
    root, _ = layout
    with pytest.raises(FileAccessRefused, match="absolute"):
        ReadFileTool(root).invoke(str(root / "readme.md"))


def test_missing_file_lists_only_the_folder_inside_root(layout):
    root, _ = layout
    tool = ReadFileTool(root)
    with pytest.raises(FileAccessRefused) as info:
        tool.invoke("notes/tdo.txt")
    assert str(info.value) == "no such file: 'notes/tdo.txt'; files in 'notes': todo.txt"
    with pytest.raises(FileAccessRefused, match="no such file: 'nope/x.txt'$"):
        tool.invoke("nope/x.txt")
    with pytest.raises(FileAccessRefused, match="is a folder.*todo.txt"):
        tool.invoke("notes")


def test_binary_and_non_utf8_refused(layout):
    root, _ = layout
    tool = ReadFileTool(root)
    with pytest.raises(FileAccessRefused, match="binary"):
        tool.invoke("image.bin")
    with pytest.raises(FileAccessRefused, match="not UTF-8"):
        tool.invoke("latin1.txt")


def test_size_limit_truncates_without_breaking_multibyte_characters(tmp_path):
    (tmp_path / "big.txt").write_text("é" * 100, encoding="utf-8")  # 200 bytes
    text = ReadFileTool(tmp_path, max_bytes=51).invoke("big.txt").text
    body, note = text.split("\n")
    assert body == "é" * 25
    assert note == "[truncated: only the first 51 bytes are shown]"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FileAccessRefused, match="not a regular file"):
        ReadFileTool(tmp_path).invoke("pipe")


def test_construction_and_schema(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        ReadFileTool(tmp_path / "missing")
    tool = get_builtin("read_file", root=tmp_path)
    assert tool.root == tmp_path.resolve() and tool.single_string_input
    with pytest.raises(ToolArgumentError, match="path"):
        tool.invoke({"file": "x"})
