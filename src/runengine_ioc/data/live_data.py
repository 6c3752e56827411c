"""Live scan arrays and peak statistics, as a document callback (no caproto, no RunEngine).

:class:`LiveData` is subscribed to the RunEngine like any other callback. Per primary event
it writes one value per array into buffers preallocated for the run (no copy, no JSON on the
RunEngine's thread) and hands the listener a :class:`~runengine_ioc.engine.events.DataUpdate`, whose
``take()`` copies the valid points; the bridge coalesces those and calls ``take()`` only when
it publishes (at ``--max-rate``). At the end of a 1-D scan it reports bluesky's own
:class:`~bluesky.callbacks.fitting.PeakStats` of the first hinted detector against the motor.

The axes follow the start document's hints, as bluesky's BestEffortCallback does:

- X is the first field of the first ``hints.dimensions`` entry (the first motor); where that is
  ``time`` or absent (``count``), X is the event's ``seq_num``.
- Y1..Yn are the first hinted scalar numeric fields of the primary descriptor: the start
  document's ``detectors`` first, in order, then any other hinted device, motors excluded.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from bluesky.callbacks.fitting import PeakStats

from ..engine.events import (
    DataSnapshot,
    DataUpdate,
    Listener,
    PeakStatsComputed,
    StatusMessage,
)

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 10_000
#: The longest Data:X/Y arrays (--data-capacity): 8 MB each, read whole by every plot client.
MAX_CAPACITY = 1_000_000
#: How many detector arrays (Data:Y1 ... Data:Y4).
MAX_Y = 4
SEQ_NUM = "seq_num"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class RunBuffer:
    """The arrays of one run: preallocated, a ring once the run outgrows the capacity.

    Written on the RunEngine's thread (:meth:`put`), copied on the publishing side
    (:meth:`snapshot`); a lock makes each copy consistent. Each run has its own buffer, so a
    snapshot taken late still belongs to its run.
    """

    def __init__(self, run_uid: str, x_name: str, y_names: tuple[str, ...], capacity: int):
        self.run_uid = run_uid
        self.x_name = x_name
        self.y_names = y_names
        self.capacity = capacity
        self._lock = threading.Lock()
        self._x = np.empty(capacity)
        self._ys = np.empty((len(y_names), capacity))
        self._taken = 0  # seq_num of the latest point (points taken)
        self._last_data: Mapping[str, Any] | None = None

    @property
    def points_taken(self) -> int:
        return self._taken

    def put(self, seq_num: int, x: float, ys: list[float], data: Mapping[str, Any]) -> None:
        """Store a point at its seq_num (a reading replayed after a pause overwrites)."""
        index = (seq_num - 1) % self.capacity
        with self._lock:
            self._x[index] = x
            self._ys[:, index] = ys
            self._taken = seq_num
            self._last_data = data

    def _ordered(self, array: np.ndarray, taken: int) -> np.ndarray:
        if taken <= self.capacity:
            return array[..., :taken].copy()
        split = taken % self.capacity  # the oldest kept point
        return np.concatenate((array[..., split:], array[..., :split]), axis=-1)

    def snapshot(self) -> DataSnapshot:
        with self._lock:
            taken = self._taken
            x = self._ordered(self._x, taken)
            ys = self._ordered(self._ys, taken)
            last = self._last_data
        return DataSnapshot(
            run_uid=self.run_uid,
            x_name=self.x_name,
            y_names=self.y_names,
            x=x,
            ys=tuple(ys),
            points_taken=taken,
            last_event=json.dumps(last, default=_json_default) if last is not None else "",
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def x_field(start: Mapping[str, Any]) -> str:
    """The X axis of a run: the first dimension's first field, or seq_num (count, time)."""
    dimensions = (start.get("hints") or {}).get("dimensions") or []
    try:
        first = dimensions[0][0][0]
    except (IndexError, TypeError, KeyError):
        first = None
    if isinstance(first, str) and first != "time":
        return first
    motors = start.get("motors") or []
    return str(motors[0]) if motors else SEQ_NUM


def y_fields(
    start: Mapping[str, Any], descriptor: Mapping[str, Any], exclude: set[str], limit: int = MAX_Y
) -> tuple[str, ...]:
    """The first hinted scalar numeric fields of a descriptor, detectors first."""
    hints: Mapping[str, Any] = descriptor.get("hints") or {}
    data_keys: Mapping[str, Any] = descriptor.get("data_keys") or {}
    motors = {str(m) for m in start.get("motors") or []}
    detectors = [str(d) for d in start.get("detectors") or [] if d in hints]
    others = [name for name in hints if name not in detectors and name not in motors]
    fields: list[str] = []
    for device in [*detectors, *others]:
        for field in (hints.get(device) or {}).get("fields") or []:
            key = data_keys.get(field) or {}
            numeric = key.get("dtype") in ("number", "integer") and not key.get("shape")
            if numeric and field not in exclude and field not in fields:
                fields.append(field)
    return tuple(fields[:limit])


class LiveData:
    """Document callback turning each run's primary stream into live arrays and peak stats.

    Parameters
    ----------
    listener
        Receives :class:`DataUpdate` (coalesced by the bridge), :class:`PeakStatsComputed`
        and :class:`StatusMessage` records; called on the RunEngine's thread, must not block.
    capacity
        Points kept per array; a longer run keeps the most recent ones.
    """

    def __init__(self, listener: Listener, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the data capacity must be at least 1")
        self._listener = listener
        self.capacity = capacity
        self._run_start: Mapping[str, Any] | None = None
        self._primary_uid: str | None = None  # uid of the primary descriptor followed
        self._buffer: RunBuffer | None = None
        self._peak: PeakStats | None = None
        self._overflow_said = False

    @property
    def buffer(self) -> RunBuffer | None:
        """The current (or last) run's buffer."""
        return self._buffer

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        # never let a problem here disturb the plan
        try:
            handler = getattr(self, f"_on_{name}", None)
            if handler is not None:
                handler(doc)
        except Exception:
            log.exception("live data: %s document not handled", name)

    def _on_start(self, doc: dict[str, Any]) -> None:
        self._run_start = doc
        self._primary_uid = None
        self._buffer = None
        self._peak = None
        self._overflow_said = False

    def _on_descriptor(self, doc: dict[str, Any]) -> None:
        if self._run_start is None or doc.get("name") != "primary" or self._primary_uid is not None:
            return
        x_name = x_field(self._run_start)
        data_keys = doc.get("data_keys") or {}
        if x_name != SEQ_NUM and x_name not in data_keys:
            # a motor named in the start document: its first hinted field
            fields = ((doc.get("hints") or {}).get(x_name) or {}).get("fields") or []
            x_name = fields[0] if fields and fields[0] in data_keys else SEQ_NUM
        ys = y_fields(self._run_start, doc, exclude={x_name})
        self._primary_uid = doc["uid"]
        self._buffer = RunBuffer(self._run_start["uid"], x_name, ys, self.capacity)
        one_motor = len(self._run_start.get("motors") or []) == 1
        if one_motor and x_name != SEQ_NUM and ys:
            self._peak = PeakStats(x_name, ys[0])
            self._peak("start", dict(self._run_start))
            self._peak("descriptor", doc)
        # the names are known: publish them (with no points yet)
        self._listener(DataUpdate(self._buffer.run_uid, self._buffer.snapshot))

    def _on_event(self, doc: dict[str, Any]) -> None:
        buffer = self._buffer
        if buffer is None or doc.get("descriptor") != self._primary_uid:
            return
        data = doc["data"]
        seq_num = int(doc["seq_num"])
        x = float(seq_num) if buffer.x_name == SEQ_NUM else _number(data.get(buffer.x_name))
        buffer.put(seq_num, x, [_number(data.get(y)) for y in buffer.y_names], data)
        if self._peak is not None:
            self._peak("event", doc)
        if seq_num > self.capacity and not self._overflow_said:
            self._overflow_said = True
            self._listener(
                StatusMessage(
                    f"run longer than --data-capacity {self.capacity}: Data arrays keep "
                    f"the most recent {self.capacity} points"
                )
            )
        self._listener(DataUpdate(buffer.run_uid, buffer.snapshot))

    def _on_event_page(self, doc: dict[str, Any]) -> None:
        from event_model import unpack_event_page

        for event in unpack_event_page(doc):  # type: ignore[arg-type]
            self._on_event(event)

    def _on_stop(self, doc: dict[str, Any]) -> None:
        peak, buffer = self._peak, self._buffer
        self._run_start = None
        self._peak = None
        if peak is None or buffer is None:
            return
        peak("stop", doc)
        self._listener(peak_stats_event(buffer.run_uid, buffer.y_names[0], buffer.x_name, peak))


def peak_stats_event(run_uid: str, detector: str, motor: str, peak: Any) -> PeakStatsComputed:
    """PeakStats' results as plain floats, NaN where bluesky left them undefined."""

    def number(value: Any) -> float:
        return math.nan if value is None else _number(value)

    maximum = peak.max if peak.max is not None else (None, None)
    return PeakStatsComputed(
        run_uid=run_uid,
        detector=detector,
        motor=motor,
        cen=number(peak.cen),
        com=number(peak.com),
        max=number(maximum[1]),
        max_pos=number(maximum[0]),
        fwhm=number(peak.fwhm),
    )
