"""Whether the data directory can take a run: free-space floor and writability, on a real
small tmpfs (``tests/tmpfs.py``) that is filled or remounted read-only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runengine_ioc.data.disk import disk_state
from runengine_ioc.data.files import LocalFilesSink
from runengine_ioc.engine.events import Refused
from tests.tmpfs import MB, fill, remount, small_tmpfs


@pytest.fixture
def disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    with small_tmpfs(tmp_path / "disk", size_kb=2048) as path:
        yield path


def test_room_above_the_floor_lets_runs_start(disk):
    sink = LocalFilesSink(disk, min_free_mb=1.0)
    state = sink.disk_state()
    assert state.ok
    assert 1.5 < state.free_mb <= 2.0
    assert state.describe().startswith("ok: 2 MB free in ")
    sink.preflight()  # no refusal
    assert list(disk.iterdir()) == []  # the write probe leaves nothing behind


def test_below_the_floor_refuses_and_says_how_much_is_left(disk):
    filler = fill(disk, leave=MB // 2)
    sink = LocalFilesSink(disk, min_free_mb=1.0)
    state = sink.disk_state()
    assert not state.ok
    assert state.free_mb < 1.0
    assert "MB free, below the 1 MB floor (--min-free-mb)" in state.problem
    with pytest.raises(Refused, match=r"^no run started: data directory .* below the 1 MB floor"):
        sink.preflight()
    filler.unlink()
    sink.preflight()  # room again: no refusal


def test_a_read_only_directory_refuses_even_for_root(disk):
    sink = LocalFilesSink(disk, min_free_mb=0)
    remount(disk, "ro")
    try:
        state = sink.disk_state()
        assert "is not writable (Read-only file system)" in state.problem
        with pytest.raises(Refused, match="not writable"):
            sink.preflight()
    finally:
        remount(disk, "rw")
    sink.preflight()


def test_a_missing_directory_is_a_problem_not_a_crash(tmp_path):
    state = disk_state(tmp_path / "gone", 0)
    assert math.isnan(state.free_mb)
    assert "No such file or directory" in state.problem
