"""Live data PVs (sscan-style arrays, peak statistics) and the document sinks' health."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup

from ..data.live_data import DEFAULT_CAPACITY, MAX_Y
from ..engine.events import DataSnapshot, PeakStatsComputed, RunOpened, SinkHealth
from .common import clip_text, long_string, pv, write_alarmed, write_numeric_alarmed

log = logging.getLogger(__name__)

_SEVERITIES = (AlarmSeverity.NO_ALARM, AlarmSeverity.MINOR_ALARM, AlarmSeverity.MAJOR_ALARM)
#: Longest text in a stringin record (39 characters and the terminator).
_STRINGIN = 39


def _array(name: str, doc: str, capacity: int) -> Any:
    return pv(
        name,
        doc,
        value=[],
        dtype=ChannelType.DOUBLE,
        max_length=capacity,
        record="waveform",
        read_only=True,
    )


def _name(name: str, doc: str) -> Any:
    return pv(name, doc, value="", dtype=ChannelType.STRING, record="stringin", read_only=True)


def _stat(name: str, doc: str) -> Any:
    return pv(name, doc, value=math.nan, record="ai", precision=4, read_only=True)


class DataGroupBase(PVGroup):
    """Live arrays of the current (or last) run and the peak statistics of the last 1-D scan.

    The arrays are reset when a run opens and grow point by point (published at
    ``--max-rate``); the statistics are NaN with INVALID severity until a 1-D scan ends.
    The arrays themselves are added by :func:`data_group_class`, which knows their capacity.
    """

    x_name = _name("Data:XName", "Data key of Data:X")
    y1_name = _name("Data:Y1Name", "Data key of Data:Y1")
    y2_name = _name("Data:Y2Name", "Data key of Data:Y2")
    y3_name = _name("Data:Y3Name", "Data key of Data:Y3")
    y4_name = _name("Data:Y4Name", "Data key of Data:Y4")
    num_points = pv(
        "Data:NumPoints", "Valid points in Data:X/Y", value=0, record="longin", read_only=True
    )
    last_event = long_string("Data:LastEvent", "Last primary event data, JSON", read_only=True)
    stats_detector = _name("Stats:Detector", "Detector of the peak statistics")
    stats_motor = _name("Stats:Motor", "Motor of the peak statistics")
    cen = _stat("Stats:Cen", "Peak centre (mid half-max points)")
    com = _stat("Stats:Com", "Peak centre of mass")
    max = _stat("Stats:Max", "Peak maximum value")
    max_pos = _stat("Stats:MaxPos", "Motor position of the maximum")
    fwhm = _stat("Stats:Fwhm", "Peak full width at half maximum")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run_uid = ""
        self._names: tuple[str, ...] = ()
        # the statistics as last written (None: not yet): a run's start and end rewrite them
        # only if they change (back-to-back queue items would publish 7 unchanged PVs twice)
        self._stats_shown: tuple[Any, ...] | None = None

    def _arrays(self) -> list[Any]:
        return [getattr(self, attr) for attr in ARRAY_ATTRS]

    def _name_pvs(self) -> list[Any]:
        return [self.x_name, self.y1_name, self.y2_name, self.y3_name, self.y4_name]

    async def initialise(self) -> None:
        """At start-up: the arrays' NELM, empty arrays and undefined statistics."""
        for array in self._arrays():
            await array.field_inst.number_of_elements.write(array.max_length)
        await self._reset()

    async def publish_event(self, event: Any) -> None:
        if isinstance(event, RunOpened):
            self._run_uid = event.uid
            await self._reset()
        elif isinstance(event, PeakStatsComputed):
            await self._publish_stats(event)

    async def _write_array(self, channel: Any, values: Any) -> None:
        await channel.write(values)
        await channel.field_inst.number_elements_read.write(len(values))

    async def _reset(self) -> None:
        for array in self._arrays():
            if len(array.value):
                await self._write_array(array, [])
        if self.num_points.value != 0:
            await self.num_points.write(0)
        if self.last_event.value != "":
            await self.last_event.write("")
        await self._write_names(("",) * (MAX_Y + 1))
        await self._publish_stats(None)

    async def _write_names(self, names: tuple[str, ...]) -> None:
        if names == self._names:
            return
        self._names = names
        for channel, name in zip(self._name_pvs(), names, strict=True):
            await channel.write(name[:_STRINGIN])

    async def publish_data(self, snapshot: DataSnapshot) -> None:
        if snapshot.run_uid != self._run_uid:
            return  # a run whose RunOpened has not been shown (or is already over)
        names = (snapshot.x_name, *snapshot.y_names)
        await self._write_names(names + ("",) * (MAX_Y + 1 - len(names)))
        arrays = [snapshot.x, *snapshot.ys]
        for i, channel in enumerate(self._arrays()):
            values = arrays[i] if i < len(arrays) else np.empty(0)
            if len(values) or len(channel.value):
                await self._write_array(channel, values)
        await self.num_points.write(len(snapshot.x))
        if snapshot.last_event:
            await self.last_event.write(clip_text(snapshot.last_event))

    async def _publish_stats(self, stats: PeakStatsComputed | None) -> None:
        detector = stats.detector[:_STRINGIN] if stats else ""
        motor = stats.motor[:_STRINGIN] if stats else ""
        values = {
            "cen": stats.cen if stats else math.nan,
            "com": stats.com if stats else math.nan,
            "max": stats.max if stats else math.nan,
            "max_pos": stats.max_pos if stats else math.nan,
            "fwhm": stats.fwhm if stats else math.nan,
        }
        shown = (detector, motor, *("nan" if math.isnan(v) else v for v in values.values()))
        if shown == self._stats_shown:
            return
        self._stats_shown = shown
        await self.stats_detector.write(detector)
        await self.stats_motor.write(motor)
        for attr, value in values.items():
            undefined = math.isnan(value)
            severity = AlarmSeverity.INVALID_ALARM if undefined else AlarmSeverity.NO_ALARM
            # CALC: caproto's STAT menu ends at SOFT (no UDF)
            status = AlarmStatus.CALC if undefined else AlarmStatus.NO_ALARM
            await write_numeric_alarmed(getattr(self, attr), value, severity, status)


ARRAY_ATTRS = ("x", *[f"y{i}" for i in range(1, MAX_Y + 1)])


def data_group_class(capacity: int = DEFAULT_CAPACITY) -> type[DataGroupBase]:
    """The data PVs with their arrays (Data:X, Data:Y1..Y4) ``capacity`` points long."""
    arrays = {"x": _array("Data:X", "First motor (seq_num for count)", capacity)}
    for i in range(1, MAX_Y + 1):
        arrays[f"y{i}"] = _array(f"Data:Y{i}", f"Hinted detector field {i}", capacity)
    return type("DataGroup", (DataGroupBase,), {"__doc__": DataGroupBase.__doc__, **arrays})


DataGroup = data_group_class()


class SinksGroup(PVGroup):
    """How the document sinks other than the local files are doing."""

    status = long_string("Sinks:Status", "Document sinks, in words", read_only=True)
    dropped = pv(
        "Sinks:Dropped",
        "Documents a sink could not deliver",
        value=0,
        record="longin",
        read_only=True,
    )

    async def publish_health(self, health: SinkHealth) -> None:
        severity = _SEVERITIES[max(0, min(2, health.severity))]
        await write_alarmed(self.status, clip_text(health.text), severity)
        dropped_severity = AlarmSeverity.MINOR_ALARM if health.undelivered else severity.NO_ALARM
        await write_numeric_alarmed(self.dropped, health.undelivered, dropped_severity)
