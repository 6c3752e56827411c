"""A full disk, for real: a small tmpfs as the data directory, filled until a run cannot finish.

The run fails, its file keeps every whole document (no line cut short); then, below the
free-space floor, Disk:Status says so with a MAJOR alarm and every way to start a plan (Start,
a form's Start, Submit) is refused before anything runs; once there is room, runs start again.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from runengine_ioc.data.files import DamagedRunWarning, read_run
from tests.polling import wait_until
from tests.tmpfs import fill, small_tmpfs

COUNT = {"detectors": ["det"], "num": 3}
FLOOR_MB = 0.25


@pytest.fixture
def disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    with small_tmpfs(tmp_path / "disk", size_kb=1024) as path:
        yield path


def disk_says(ioc, fragment: str, severity: str) -> str:  # type: ignore[no-untyped-def]
    def probe() -> str | None:
        text = ioc.ca.get_text("Disk:Status")
        sevr = ioc.ca.get("Disk:Status.SEVR")
        return text if fragment in text and sevr == severity else None

    return wait_until(probe, 15, 0.1, what=f"Disk:Status {fragment!r} {severity}")


def test_a_full_disk_fails_the_run_whole_then_refuses_runs_until_there_is_room(make_ioc, disk):
    ioc = make_ioc("--min-free-mb", str(FLOOR_MB), "--no-autosave", data_dir=disk)
    disk_says(ioc, "ok: 1 MB free", "NO_ALARM")
    assert 0.9 < float(ioc.ca.get("Disk:FreeMB")) <= 1.0

    # room above the floor, but not for this run: it fails part-way through
    filler = fill(disk, leave=int(1.2 * FLOOR_MB * 1024 * 1024))
    ioc.ca.configure("count", {"detectors": ["det"], "num": 20000})
    assert ioc.ca.put("Start", 1).ok  # the put completes when the plan has ended
    assert ioc.ca.get("ExitStatus") == "fail"
    assert "No space left on device" in ioc.ca.get_text("Status")
    (run_file,) = ioc.runs()
    assert run_file.read_bytes().endswith(b"\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRunWarning)
        documents = read_run(run_file)
    events = [doc for name, doc in documents if name == "event"]
    assert 100 < len(events) < 20000

    # below the floor now: said before anyone tries, and every way in is refused
    text = disk_says(ioc, f"below the {FLOOR_MB:g} MB floor (--min-free-mb)", "MAJOR")
    assert text.startswith(f"data directory {disk} has ")
    assert ioc.ca.get("Disk:FreeMB.SEVR") == "MAJOR"
    ioc.ca.configure("count", COUNT)
    ioc.ca.put_ok("count:detectors", "det", string=True)
    for pv, value, string in (
        ("Start", 1, False),
        ("count:Start", 1, False),
        ("Submit", {"plan": "count", "args": COUNT, "metadata": {}}, True),
    ):
        result = ioc.ca.put(pv, value, string=string)
        assert not result.ok, f"{pv} should have been refused"
        status = ioc.ca.get_text("Status")
        assert status.startswith(f"refused: {pv}: no run started: data directory "), status
        assert "below the 0.25 MB floor" in status
    assert ioc.ca.get("State") == "idle"
    assert ioc.runs() == [run_file]  # nothing started

    # room again: the alarm clears and runs start
    filler.unlink()
    disk_says(ioc, "ok: ", "NO_ALARM")
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert len(ioc.runs()) == 2
