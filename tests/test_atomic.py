"""Atomic writes: readers see the old file or the new one, never a part; a failed write leaves no trace."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.atomic import atomic_write, write_text_atomic


@settings(max_examples=30, deadline=None)
@given(old=st.binary(max_size=2000), new=st.binary(max_size=2000))
def test_a_finished_write_replaces_the_file(tmp_path_factory, old, new):
    path = tmp_path_factory.mktemp("atomic") / "f.bin"
    path.write_bytes(old)
    with atomic_write(path) as f:
        f.write(new)
        assert path.read_bytes() == old            # not in place until the block ends
    assert path.read_bytes() == new
    assert os.listdir(path.parent) == ["f.bin"]


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, error):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(type(error)):
        with atomic_write(path, "w") as f:
            f.write("half of the new")
            raise error
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_a_new_file_in_a_new_folder_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a" / "b" / "f.txt", "héllo\n")
    finally:
        os.umask(umask)
    path = tmp_path / "a" / "b" / "f.txt"
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_write_names_nothing_it_did_not_create(tmp_path):
    (tmp_path / "f.txt").mkdir()                    # a folder where the file should go: the rename fails
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "f.txt", "x")
    assert os.listdir(tmp_path) == ["f.txt"] and os.listdir(tmp_path / "f.txt") == []
