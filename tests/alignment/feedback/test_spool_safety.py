"""The spool in a folder someone else could write to (N11): a planted symlink or hard link is
never followed, read, truncated or appended to; a folder that is a symlink, another user's, or
writable by others without the sticky bit is refused with one line; a new folder is private."""
from __future__ import annotations

import json
import os
import stat

import pytest

from rankact.alignment.errors import RecorderError
from rankact.alignment.feedback.recorder.recorder import Recorder
from rankact.alignment.feedback.recorder.spool import Spool

FAST = {"backoff": 0.02, "max_backoff": 0.05, "linger": 0.01, "close_timeout": 1}
SECRET = "line 1\nIMPORTANT SETTING = 1"  # the last line has no newline: once cut as a "torn tail"


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victims" / "config.txt"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.db'}"


@pytest.mark.parametrize("name", ["spool-0.jsonl", "spool-0.lock", "spool-3.jsonl"])
def test_a_planted_symlink_in_the_spool_folder_is_refused_and_never_touched(tmp_path, victim, name):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    if name == "spool-3.jsonl":  # a "dead process's" spool, to be adopted
        (folder / "spool-3.lock").touch(mode=0o600)
    os.symlink(victim, folder / name)
    with pytest.raises(RecorderError, match="symlink") as refused:
        Recorder(store_url(tmp_path), spool_dir=folder, **FAST)
    assert victim.read_text() == SECRET
    assert "\n" not in str(refused.value)


def test_a_planted_hard_link_is_refused(tmp_path, victim):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    os.link(victim, folder / "spool-0.jsonl")
    with pytest.raises(RecorderError, match="other hard links"):
        Recorder(store_url(tmp_path), spool_dir=folder, **FAST)
    assert victim.read_text() == SECRET


@pytest.mark.parametrize("name", ["dead-letter.jsonl", "dead-letter.lock"])
def test_a_dead_letter_symlink_is_refused_at_start(tmp_path, victim, name):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    os.symlink(victim, folder / name)
    with pytest.raises(RecorderError, match="symlink"):
        Recorder(store_url(tmp_path), spool_dir=folder, **FAST)
    assert victim.read_text() == SECRET


def test_a_dead_letter_symlink_planted_later_is_never_appended_to_and_the_line_stays_spooled(tmp_path, victim,
                                                                                              caplog):
    folder = tmp_path / "spool"
    recorder = Recorder(store_url(tmp_path), spool_dir=folder, **FAST)
    os.symlink(victim, folder / "dead-letter.jsonl")
    recorder._append(b'{"not": "a trajectory"}', "junk")  # a line the store refuses for good
    recorder.flush(timeout=0.5)
    stats = recorder.close()
    assert victim.read_text() == SECRET
    assert (stats.failed, stats.spooled) == (0, 1)  # not lost: kept in the spool
    assert "cannot write the dead-letter file" in caplog.text and "symlink" in caplog.text


def test_a_symlinked_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(real, tmp_path / "link")
    with pytest.raises(RecorderError, match="is a symlink"):
        Recorder(store_url(tmp_path), spool_dir=tmp_path / "link", **FAST)


def test_a_folder_others_can_write_is_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RecorderError, match="can be written by other users"):
        Recorder(store_url(tmp_path), spool_dir=shared, **FAST)
    shared.chmod(0o1777)  # like /tmp: others cannot remove or rename our files
    Recorder(store_url(tmp_path), spool_dir=shared, **FAST).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 4242, 4242)
    with pytest.raises(RecorderError, match="belongs to another user"):
        Recorder(store_url(tmp_path), spool_dir=theirs, **FAST)


def test_a_new_folder_and_its_files_are_private(tmp_path):
    folder = tmp_path / "deep" / "spool"
    with Recorder(store_url(tmp_path), spool_dir=folder, **FAST) as recorder:
        recorder._append(b'{"not": "a trajectory"}', "junk")
        assert recorder.flush(timeout=5)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert [json.loads(line)["body"] for line in (folder / "dead-letter.jsonl").read_text().splitlines()] == [
        {"not": "a trajectory"}]


def test_compaction_never_follows_a_planted_tmp_file(tmp_path, victim):
    spool = Spool(tmp_path / "spool", compact_bytes=30)
    os.symlink(victim, spool.path.with_suffix(".tmp"))
    for i in range(10):
        spool.append(json.dumps({"n": i}).encode())
    for line in spool.peek(5):
        spool.ack(line)
    assert victim.read_text() == SECRET
    assert [json.loads(line)["n"] for line in spool.peek(100)] == [5, 6, 7, 8, 9]
    assert not spool.path.with_suffix(".tmp").exists()


def test_a_dead_letter_holding_a_lone_surrogate_is_still_replayable(tmp_path):
    from rankact.alignment.feedback.recorder.spool import dead_letter_line

    line = dead_letter_line({"at": None, "reason": "HTTP 422", "body": {"kind": "feedback", "body": {"c": "\udc00"}}})
    assert line.startswith(b'{"kind":"feedback","body":') and b"\\udc00" in line
