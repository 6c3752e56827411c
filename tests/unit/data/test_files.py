"""The local files sink on a full disk, the reader of damaged files, and scan ids.

The full disk is real: a small tmpfs (``tests/tmpfs.py``), filled until a run cannot finish.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from bluesky import RunEngine
from bluesky.plans import count

from runengine_ioc.data.files import (
    SCAN_ID_FILE,
    DamagedRunWarning,
    LocalFilesSink,
    PersistentScanId,
    read_run,
    run_table,
)
from tests.tmpfs import fill, small_tmpfs

EVENT = {"descriptor": "d1", "uid": "e", "time": 1.0, "seq_num": 1, "data": {"det": 1.0}}


@pytest.fixture
def full_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    with small_tmpfs(tmp_path / "disk", size_kb=1024) as path:
        yield path


def test_a_run_on_a_disk_that_fills_keeps_every_whole_document(RE, devices, full_disk):
    fill(full_disk, leave=40 * 1024)
    sink = LocalFilesSink(full_disk, min_free_mb=0)
    RE.subscribe(sink)
    with pytest.raises(OSError, match="No space left"):
        RE(count([devices.det], 2000))
    sink.close()
    assert sink.last_file is not None
    raw = sink.last_file.read_bytes()
    assert raw.endswith(b"\n"), "the file ends in half a line"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRunWarning)
        documents = read_run(sink.last_file)
    assert not documents.damaged
    events = [doc for name, doc in documents if name == "event"]
    assert len(events) > 50  # the disk filled part-way through, not at the start
    assert [doc["seq_num"] for doc in events] == list(range(1, len(events) + 1))


def test_a_start_document_that_cannot_be_written_leaves_no_file(RE, devices, full_disk):
    fill(full_disk, leave=0)
    sink = LocalFilesSink(full_disk, min_free_mb=0)
    RE.subscribe(sink)
    with pytest.raises(OSError):
        RE(count([devices.det], 3))
    sink.close()
    assert not list(full_disk.glob("*.jsonl"))


def write_lines(path: Path, documents: list[tuple[str, dict]], tail: bytes = b"") -> None:
    text = "".join(json.dumps({"name": n, "doc": d}) + "\n" for n, d in documents)
    path.write_bytes(text.encode() + tail)


def test_read_run_returns_the_whole_documents_of_a_file_cut_short(tmp_path):
    path = tmp_path / "scan000001_abcdef12.jsonl"
    good = [
        ("start", {"uid": "s", "time": 0.0, "scan_id": 1}),
        ("descriptor", {"uid": "d1", "name": "primary", "run_start": "s"}),
        *[("event", {**EVENT, "seq_num": i, "uid": f"e{i}"}) for i in range(1, 191)],
    ]
    write_lines(path, good, tail=b'{"name": "event", "doc": {"descriptor": "d1", "uid": "e19')
    with pytest.warns(DamagedRunWarning, match="ends in a line cut short; 192 whole"):
        documents = read_run(path)
    assert list(documents) == good
    assert documents.damaged_tail
    assert [line.number for line in documents.damaged] == [193]
    with pytest.warns(DamagedRunWarning):
        table = run_table(path)
    assert len(table) == 190
    assert table.attrs["damaged_lines"] == [193]


def test_read_run_skips_a_damaged_middle_line_but_it_is_no_tail(tmp_path):
    path = tmp_path / "run.jsonl"
    head = [("start", {"uid": "s"})]
    write_lines(path, head, tail=b"\xff\xfe not json\n" + b'{"name": "stop", "doc": {}}\n')
    with pytest.warns(DamagedRunWarning, match="line 2"):
        documents = read_run(path)
    assert [name for name, _ in documents] == ["start", "stop"]
    assert not documents.damaged_tail


def test_a_whole_file_reads_without_warning(tmp_path):
    path = tmp_path / "run.jsonl"
    write_lines(path, [("start", {"uid": "s"}), ("stop", {"uid": "t"})])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        documents = read_run(path)
    assert len(documents) == 2 and documents.damaged == ()


# ------------------------------------------------------------------------------ scan ids


def scan_ids_on_disk(data_dir: Path) -> list[int]:
    return [read_run(path)[0][1]["scan_id"] for path in sorted(data_dir.glob("*.jsonl"))]


@pytest.mark.parametrize("damage", ["emptied", "deleted", "older"])
def test_scan_ids_never_go_back_when_scan_id_json_is_lost(tmp_path, devices, damage):
    def one_ioc_session(runs: int) -> None:
        RE = RunEngine({}, context_managers=[], scan_id_source=PersistentScanId(tmp_path))
        RE.subscribe(LocalFilesSink(tmp_path, min_free_mb=0))
        try:
            for _ in range(runs):
                RE(count([devices.det], 1))
        finally:
            RE.loop.call_soon_threadsafe(RE.loop.stop)
            RE._th.join(timeout=5)
            RE.loop.close()

    one_ioc_session(3)
    id_file = tmp_path / SCAN_ID_FILE
    if damage == "emptied":
        id_file.write_text("")
    elif damage == "deleted":
        id_file.unlink()
    else:  # restored from an old backup
        id_file.write_text(json.dumps({"scan_id": 1}))
    one_ioc_session(2)
    assert scan_ids_on_disk(tmp_path) == [1, 2, 3, 4, 5]


def test_scan_ids_go_on_while_running_even_if_the_file_goes(tmp_path):
    (tmp_path / "scan000041_0a1b2c3d.jsonl").write_text("")
    (tmp_path / "notes_scan000099.jsonl").write_text("")  # not a run file name
    source = PersistentScanId(tmp_path)
    assert source({}) == 42
    (tmp_path / SCAN_ID_FILE).unlink()
    assert source({}) == 43
    assert PersistentScanId(tmp_path)({}) == 44  # the file says 43 again
