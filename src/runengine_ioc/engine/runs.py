"""Runs as the worker sees them in the document stream: events up, and the runs left open.

:class:`RunTracker` turns documents into :class:`~.events.RunOpened`, ``Progress`` and
``RunClosed`` records, and remembers which runs are open with how many events each stream
has, so that a worker that has to give a RunEngine up (a Halt it could not carry out) can
still close those runs with a stop document of its own (:meth:`RunTracker.closing_documents`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from typing import Any

from .events import ExitStatus, Listener, Progress, RunClosed, RunOpened

_INTERRUPT_OUTCOMES = {
    "stop": (ExitStatus.SUCCESS, "stopped on request"),
    "abort": (ExitStatus.ABORT, "aborted on request"),
    "halt": (ExitStatus.ABORT, "halted on request (no cleanup)"),
}


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def plan_outcome(
    interrupt: tuple[str, str] | None,
    error: BaseException | None,
    result: Any,
    last_stop: dict[str, Any] | None,
) -> tuple[ExitStatus, str]:
    """What a plan's end means, for ExitStatus and Status.

    ``interrupt``: the Stop/Abort/Halt that acted (kind, reason); ``error``: what the plan
    raised; ``result``: bluesky's RunEngineResult. The run's own stop document has the last
    word on the status, so ExitStatus always agrees with the file (an interrupt that came too
    late to act leaves the run's own outcome); a plan that raised (no interrupt) failed.
    """
    if interrupt is not None:
        kind, reason = interrupt
        status, text = _INTERRUPT_OUTCOMES.get(kind, (ExitStatus.ABORT, kind))
        message = f"{text}: {reason}" if reason else text
        if error is not None:
            message = f"{kind}: {describe_error(error)}"
    elif error is not None:
        return ExitStatus.FAIL, describe_error(error)
    else:
        status = ExitStatus(str(getattr(result, "exit_status", "success")))
        message = str(getattr(result, "reason", "") or "") or "completed"
    if last_stop is not None and last_stop.get("exit_status") in ("success", "abort", "fail"):
        status = ExitStatus(last_stop["exit_status"])
    return status, message


class RunTracker:
    """A document callback: run and progress events for the listener, open runs for the worker."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._primary_descriptors: set[str] = set()
        self._streams: dict[str, tuple[str, str]] = {}  # descriptor uid -> (run uid, stream)
        self._open: dict[str, Counter[str]] = {}  # run uid -> events per stream (by seq_num)
        self._points = 0
        self._total: int | None = None
        self._start_time = 0.0
        self.run_uids: list[str] = []
        self.stops: list[dict[str, Any]] = []

    def reset(self) -> None:
        """A new plan: forget the runs of the last one (open ones included: they were closed)."""
        self.run_uids = []
        self.stops = []
        self._open.clear()
        self._streams.clear()

    @property
    def last_stop(self) -> dict[str, Any] | None:
        return self.stops[-1] if self.stops else None

    def closing_documents(self, exit_status: str, reason: str) -> list[dict[str, Any]]:
        """A stop document for every run still open, as bluesky would have written it."""
        now = time.time()
        return [
            {
                "uid": str(uuid.uuid4()),
                "time": now,
                "run_start": run_uid,
                "exit_status": exit_status,
                "reason": reason,
                "num_events": dict(counts),
            }
            for run_uid, counts in self._open.items()
        ]

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._primary_descriptors.clear()
            self._points = 0
            total = doc.get("num_points")
            # a plan's own start document may say anything: Infinity or NaN is "unknown"
            # (an int is always finite, however large: math.isfinite would overflow on it)
            self._total = None
            if isinstance(total, int) and total > 0:
                self._total = total
            elif isinstance(total, float) and math.isfinite(total) and total > 0:
                self._total = int(total)
            self._start_time = float(doc.get("time", time.time()))
            self.run_uids.append(doc["uid"])
            self._open[doc["uid"]] = Counter()
            self._listener(
                RunOpened(
                    uid=doc["uid"],
                    scan_id=int(doc.get("scan_id") or 0),
                    plan_name=str(doc.get("plan_name", "")),
                    total_points=self._total,
                    start_time=self._start_time,
                )
            )
        elif name == "descriptor":
            stream = str(doc.get("name", "primary"))
            self._streams[doc["uid"]] = (str(doc.get("run_start", "")), stream)
            if stream == "primary":
                self._primary_descriptors.add(doc["uid"])
        elif name == "event":
            self._count(doc.get("descriptor"), [doc.get("seq_num", 0)])
            if doc.get("descriptor") in self._primary_descriptors:
                # a reading replayed after a pause comes again with the same seq_num
                seq_num = int(doc.get("seq_num", self._points + 1))
                if seq_num > self._points:
                    self._points = seq_num
                    self._listener(
                        Progress(self._points, self._total, self._start_time, time.time())
                    )
        elif name == "event_page":
            self._count(doc.get("descriptor"), doc.get("seq_num", ()))
        elif name == "stop":
            self.stops.append(doc)
            self._open.pop(str(doc.get("run_start", "")), None)
            self._listener(
                RunClosed(
                    uid=doc.get("run_start", ""),
                    exit_status=str(doc.get("exit_status", "")),
                    reason=str(doc.get("reason", "")),
                    num_events=int((doc.get("num_events") or {}).get("primary", 0)),
                )
            )

    def _count(self, descriptor: Any, seq_nums: Any) -> None:
        """Events per stream as bluesky counts them: by ``seq_num`` (a replay counts once)."""
        run_stream = self._streams.get(str(descriptor))
        if run_stream is None or run_stream[0] not in self._open or not seq_nums:
            return
        counts = self._open[run_stream[0]]
        counts[run_stream[1]] = max(counts[run_stream[1]], *(int(n) for n in seq_nums))
