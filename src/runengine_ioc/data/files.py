"""Where documents go: the local files sink, the embedded default, and how to read it back.

Every run gets one JSON-lines file, written by bluesky's own ``JSONLinesWriter`` (which opens,
appends and closes the file for each document, so each one is on disk before the next is
processed), made per run by event_model's ``RunRouter``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluesky.callbacks.json_writer import JSONLinesWriter
from event_model import RunRouter, sanitize_doc, unpack_datum_page, unpack_event_page

log = logging.getLogger(__name__)

SCAN_ID_FILE = "scan_id.json"


def run_file_name(start_doc: dict[str, Any]) -> str:
    """File name of a run: sortable by scan id, unique by uid."""
    return f"scan{int(start_doc.get('scan_id') or 0):06d}_{start_doc['uid'][:8]}.jsonl"


class LocalFilesSink:
    """One ``.jsonl`` file per run in ``data_dir``; lossless, flushed per document."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._router = RunRouter([self._factory])
        self.last_file: Path | None = None

    def _factory(self, name: str, start_doc: dict[str, Any]) -> tuple[list, list]:
        filename = run_file_name(start_doc)
        self.last_file = self.data_dir / filename
        writer = JSONLinesWriter(str(self.data_dir), filename=filename)

        def write(name: str, doc: dict[str, Any]) -> None:
            # RunRouter hands on pages; the file keeps one line per event, as emitted
            if name == "event_page":
                for event in unpack_event_page(doc):  # type: ignore[arg-type]
                    writer("event", sanitize_doc(event))
            elif name == "datum_page":
                for datum in unpack_datum_page(doc):  # type: ignore[arg-type]
                    writer("datum", sanitize_doc(datum))
            else:
                writer(name, sanitize_doc(doc))

        log.info("run %s saved to %s", start_doc["uid"], self.last_file)
        return [write], []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self._router(name, doc)


class PersistentScanId:
    """A RunEngine ``scan_id_source`` that carries scan ids across restarts of the IOC."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self._path = Path(data_dir) / SCAN_ID_FILE
        self._lock = threading.Lock()

    def last(self) -> int:
        try:
            return int(json.loads(self._path.read_text())["scan_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def __call__(self, md: dict[str, Any]) -> int:
        with self._lock:
            scan_id = max(self.last(), int(md.get("scan_id") or 0)) + 1
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


def read_run(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """Load a saved run back as ``(name, doc)`` pairs, in the order they were emitted."""
    documents = []
    with open(path) as file:
        for line in file:
            if line.strip():
                item = json.loads(line)
                documents.append((item["name"], item["doc"]))
    return documents


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
    for name, doc in read_run(path):
        if name == "descriptor" and doc.get("name") == stream:
            descriptors.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in descriptors:
            rows[int(doc["seq_num"])] = {"time": doc["time"], **doc["data"]}
    table = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    table.index.name = "seq_num"
    return table
