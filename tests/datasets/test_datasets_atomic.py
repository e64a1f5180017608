import json
import os
import stat

import pytest

from hub_datasets import atomic
from hub_datasets.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, make_temp_dir


def test_writes_replace_and_leave_no_temporaries(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "old")
    atomic_write_json(path, {"b": 1, "a": [1.5]}, sort_keys=True)
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    atomic_write_bytes(tmp_path / "blob", b"\x00\x01")
    assert (tmp_path / "blob").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "out.json"]


def test_mode_follows_umask_without_touching_it(tmp_path, monkeypatch):
    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("os.umask must not be called"))
        atomic_write_text(tmp_path / "f.txt", "x")
        folder = make_temp_dir(tmp_path, ".stage-")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(path, b"new")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
