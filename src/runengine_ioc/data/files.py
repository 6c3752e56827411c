"""Where documents go: the local files sink, the embedded default, and how to read it back.

Every run gets one JSON-lines file, made per run by event_model's ``RunRouter``. Each document
is one line, handed to the kernel in one ``write`` of the line and its newline together (no
Python buffer, so it is in the file before the next document is processed); a write that fails
part-way (a full disk) is cut back to the last complete line, so a file never ends in half a
document. bluesky's ``JSONLinesWriter`` wrote through a buffered file: on a full disk its last
line was cut mid-document, and the whole file no longer parsed.

The reader returns every complete document of a file and reports damaged lines (a
:class:`DamagedRunWarning`, and :attr:`RunDocuments.damaged`), so a file cut by a crash or
written by an older IOC still gives back all it holds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from event_model import RunRouter, sanitize_doc, unpack_datum_page, unpack_event_page

from .disk import DEFAULT_MIN_FREE_MB, DiskState, disk_state, refuse_unless_room

log = logging.getLogger(__name__)

SCAN_ID_FILE = "scan_id.json"
#: A run file's name: its scan id, then the first 8 characters of its uid.
RUN_FILE_PATTERN = re.compile(r"^scan(\d+)_[0-9A-Za-z-]{1,8}\.jsonl$")


def run_file_name(start_doc: dict[str, Any]) -> str:
    """File name of a run: sortable by scan id, unique by uid."""
    return f"scan{int(start_doc.get('scan_id') or 0):06d}_{start_doc['uid'][:8]}.jsonl"


class RunFileWriter:
    """One run's file: each document appended as one complete line, or not at all.

    The file is opened once (``O_APPEND``) and each line goes to the kernel in one ``write``
    call (repeated only if the kernel takes part of it). If writing fails part-way, the file
    is truncated back to where the line began, so the last line in the file is always whole;
    the error is raised, and the RunEngine fails the plan.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.lines = 0

    def write(self, name: str, doc: dict[str, Any]) -> None:
        line = (json.dumps({"name": name, "doc": doc}) + "\n").encode("utf-8")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fd = self._fd
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # frees what the cut line took, too
            if self.lines == 0:
                self.close()
                with contextlib.suppress(OSError):
                    self.path.unlink()  # not even the start document: no file at all
            raise
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LocalFilesSink:
    """One ``.jsonl`` file per run in ``data_dir``; lossless, each document a whole line.

    Parameters
    ----------
    data_dir
        Where the files go (created if missing).
    min_free_mb
        :meth:`preflight` refuses a run when the directory has less free space than this.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, min_free_mb: float = DEFAULT_MIN_FREE_MB
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.min_free_mb = min_free_mb
        self._router = RunRouter([self._factory])
        self._open: dict[str, RunFileWriter] = {}  # run uid -> its file, until its stop
        self.last_file: Path | None = None

    def _factory(self, name: str, start_doc: dict[str, Any]) -> tuple[list, list]:
        filename = run_file_name(start_doc)
        self.last_file = self.data_dir / filename
        writer = RunFileWriter(self.last_file)
        # written here, not by the callback: RunRouter wraps a callback's error on the start
        # document in a misleading warning (about event-model 1.14); this one just raises
        writer.write("start", sanitize_doc(start_doc))
        uid = str(start_doc["uid"])
        self._open[uid] = writer

        def write(name: str, doc: dict[str, Any]) -> None:
            # RunRouter hands on pages; the file keeps one line per event, as emitted
            if name == "start":
                return  # written by the factory
            if name == "event_page":
                for event in unpack_event_page(doc):  # type: ignore[arg-type]
                    writer.write("event", sanitize_doc(event))
            elif name == "datum_page":
                for datum in unpack_datum_page(doc):  # type: ignore[arg-type]
                    writer.write("datum", sanitize_doc(datum))
            elif name == "stop":
                try:
                    writer.write(name, sanitize_doc(doc))
                finally:
                    writer.close()
                    self._open.pop(uid, None)
            else:
                writer.write(name, sanitize_doc(doc))

        log.info("run %s saved to %s", start_doc["uid"], self.last_file)
        return [write], []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self._router(name, doc)

    def close(self) -> None:
        """Close the files of runs that never got their stop document."""
        for writer in self._open.values():
            writer.close()
        self._open.clear()

    def disk_state(self) -> DiskState:
        """Whether the data directory can take a run now (for the Disk PVs)."""
        return disk_state(self.data_dir, self.min_free_mb)

    def preflight(self) -> None:
        """Refuse a plan (``Refused``) when the data directory is not writable or too full.

        A pre-flight check of the bridge's: it runs before a plan is accepted, so a run is
        never started only to fail part-way for want of space.
        """
        refuse_unless_room(self.disk_state())


def highest_scan_id(names: Iterable[str]) -> int:
    """The highest scan id among run file names (``scanNNNNNN_<uid8>.jsonl``), 0 if none."""
    found = (RUN_FILE_PATTERN.match(name) for name in names)
    return max((int(match.group(1)) for match in found if match), default=0)


class PersistentScanId:
    """A RunEngine ``scan_id_source`` that carries scan ids across restarts of the IOC.

    The last id is kept in ``scan_id.json``; but that file can be emptied, deleted or
    restored from an old backup, so the next id is also never below the highest one in the
    run files' names (read at start-up) nor below one this object has handed out.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self._path = Path(data_dir) / SCAN_ID_FILE
        self._lock = threading.Lock()
        try:
            names = [entry.name for entry in os.scandir(data_dir)]
        except OSError:
            names = []
        self._floor = highest_scan_id(names)

    def last(self) -> int:
        """The last scan id used: the file's, the run files' or our own, whichever is higher."""
        try:
            recorded = int(json.loads(self._path.read_text())["scan_id"])
        except (OSError, ValueError, KeyError, TypeError):
            recorded = 0
        return max(recorded, self._floor)

    def __call__(self, md: dict[str, Any]) -> int:
        with self._lock:
            scan_id = max(self.last(), int(md.get("scan_id") or 0)) + 1
            self._floor = scan_id
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"scan_id": scan_id}))
            tmp.replace(self._path)
            return scan_id


@dataclass(frozen=True)
class InterruptedRun:
    """A run file whose documents end without a stop document (the IOC died mid-run)."""

    path: Path
    uid: str
    scan_id: int


def _last_line(path: Path, tail: int = 65536) -> bytes:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - tail))
        lines = [line for line in file.read().splitlines() if line.strip()]
    return lines[-1] if lines else b""


def find_interrupted_runs(data_dir: str | os.PathLike[str]) -> list[InterruptedRun]:
    """Run files in ``data_dir`` without a stop document, oldest first.

    Reads each file's first line (the start document) and last line only; a last line cut
    short by a kill counts as no stop document.
    """
    found = []
    for path in sorted(Path(data_dir).glob("*.jsonl")):
        try:
            with open(path, "rb") as file:
                start = json.loads(file.readline())
            if start.get("name") != "start":
                continue
            try:
                last = json.loads(_last_line(path))
                stopped = last.get("name") == "stop"
            except ValueError:
                stopped = False
        except (OSError, ValueError, AttributeError):
            log.warning("cannot read run file %s", path)
            continue
        if not stopped:
            doc = start.get("doc", {})
            found.append(
                InterruptedRun(path, str(doc.get("uid", "")), int(doc.get("scan_id") or 0))
            )
    return found


def close_cut_run(
    data_dir: str | os.PathLike[str], uid: str, scan_id: int, reason: str
) -> str | None:
    """Write the stop document of a run whose worker process died before it could.

    The file is found by its name (scan id and uid); its events are counted per stream as
    bluesky counts them, and the stop says ``exit_status`` fail with the reason. A file that
    already ends with a stop document (the worker wrote it, then died before saying so) is
    left alone. The run's exit status as its file now says it ("fail" when written here), or
    None if there is no file.
    """
    path = Path(data_dir) / run_file_name({"uid": uid, "scan_id": scan_id})
    if not path.exists():
        return None
    streams: dict[str, str] = {}  # descriptor uid -> stream name
    counts: dict[str, int] = {}
    with warnings.catch_warnings():  # a line the kill cut short is expected here
        warnings.simplefilter("ignore", DamagedRunWarning)
        documents = read_run(path)
    for name, doc in documents:
        if name == "stop":
            return str(doc.get("exit_status", "fail"))
        if name == "descriptor":
            streams[str(doc.get("uid"))] = str(doc.get("name", "primary"))
            counts.setdefault(streams[str(doc.get("uid"))], 0)
        elif name == "event":
            stream = streams.get(str(doc.get("descriptor")), "primary")
            counts[stream] = counts.get(stream, 0) + 1
    stop = {
        "uid": str(uuid.uuid4()),
        "time": time.time(),
        "run_start": uid,
        "exit_status": "fail",
        "reason": reason,
        "num_events": counts,
    }
    with open(path, "rb+") as file:  # a line cut by the kill stays a line of its own
        file.seek(0, os.SEEK_END)
        if file.tell():
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                file.write(b"\n")
    writer = RunFileWriter(path)
    writer.lines = len(documents)
    try:
        writer.write("stop", stop)
    finally:
        writer.close()
    log.warning("run %s closed by the IOC (%s): %s", uid, reason, path)
    return "fail"


def describe_interrupted(runs: list[InterruptedRun]) -> str:
    """One line for Status about runs left without a stop document ("" if none)."""
    if not runs:
        return ""
    last = runs[-1]
    text = (
        f"interrupted run {last.uid} (scan {last.scan_id}, {last.path.name}) has no stop document"
    )
    if len(runs) > 1:
        text += f" ({len(runs)} such runs in the data directory)"
    return text


class DamagedRunWarning(UserWarning):
    """A run file holds lines that are not whole documents (skipped by :func:`read_run`)."""


@dataclass(frozen=True)
class DamagedLine:
    """A line of a run file that is not a whole document.

    Attributes
    ----------
    number
        Its line number (from 1).
    size
        Its length in bytes.
    error
        Why it could not be read.
    last
        Whether it is the file's last line: a damaged tail (a write cut short).
    """

    number: int
    size: int
    error: str
    last: bool


class RunDocuments(list[tuple[str, dict[str, Any]]]):
    """The ``(name, doc)`` pairs of a run file, and the lines that could not be read."""

    def __init__(
        self, documents: Iterable[tuple[str, dict[str, Any]]], damaged: Iterable[DamagedLine]
    ) -> None:
        super().__init__(documents)
        self.damaged: tuple[DamagedLine, ...] = tuple(damaged)

    @property
    def damaged_tail(self) -> bool:
        """True when the file ends in a line cut short (a full disk, a crash mid-write)."""
        return any(line.last for line in self.damaged)


def _document(line: bytes) -> tuple[str, dict[str, Any]]:
    item = json.loads(line)
    name, doc = item["name"], item["doc"]
    if not isinstance(name, str) or not isinstance(doc, dict):
        raise ValueError("not a {name, doc} pair")
    return name, doc


def read_run(path: str | os.PathLike[str]) -> RunDocuments:
    """Load a saved run back as ``(name, doc)`` pairs, in the order they were emitted.

    Every whole document is returned. Lines that are not (the tail of a file whose last
    write was cut short, above all) are skipped, listed in ``.damaged`` of the result and
    reported with a :class:`DamagedRunWarning`, instead of making the whole file unreadable.
    """
    documents: list[tuple[str, dict[str, Any]]] = []
    damaged: list[tuple[int, int, str]] = []
    number = 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                documents.append(_document(line))
            except (ValueError, KeyError, TypeError) as exc:
                damaged.append((number, len(line), f"{type(exc).__name__}: {exc}"))
    lines = [DamagedLine(n, size, error, n == number) for n, size, error in damaged]
    result = RunDocuments(documents, lines)
    if lines:
        where = ", ".join(str(line.number) for line in lines[:5]) + (
            "..." if len(lines) > 5 else ""
        )
        tail = "; the file ends in a line cut short" if result.damaged_tail else ""
        warnings.warn(
            f"{Path(path).name}: {len(lines)} damaged line(s) skipped (line {where}){tail}; "
            f"{len(documents)} whole documents read",
            DamagedRunWarning,
            stacklevel=2,
        )
    return result


def replay(path: str | os.PathLike[str], callback: Callable[[str, dict[str, Any]], Any]) -> None:
    """Feed a saved run, document by document, to a callback (a DocumentRouter, a
    ``RunRouter``, bluesky's ``TiledWriter`` or ``Publisher``...), as the RunEngine did."""
    for name, doc in read_run(path):
        callback(name, doc)


def run_table(path: str | os.PathLike[str], stream: str = "primary") -> Any:
    """One stream of a saved run as a pandas DataFrame (needs pandas: the ``pandas`` extra).

    One row per event, indexed by ``seq_num``, with a ``time`` column and one column per data
    key. Readings replayed after a pause (the same ``seq_num`` again) keep the latest.
    """
    import pandas as pd

    descriptors: set[str] = set()
    rows: dict[int, dict[str, Any]] = {}
    documents = read_run(path)
    for name, doc in documents:
        if name == "descriptor" and doc.get("name") == stream:
            descriptors.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in descriptors:
            rows[int(doc["seq_num"])] = {"time": doc["time"], **doc["data"]}
    table = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    table.index.name = "seq_num"
    # a damaged file was warned about by read_run; the table says so too
    table.attrs["damaged_lines"] = [line.number for line in documents.damaged]
    return table
