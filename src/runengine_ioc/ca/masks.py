"""Event masks: each monitor gets the updates its mask asks for, as from an EPICS record.

A Channel Access monitor names the events it wants: ``DBE_VALUE`` (the value changed, beyond
``MDEL``), ``DBE_LOG`` (beyond ``ADEL``: the archiver's), ``DBE_ALARM`` (severity or status
changed: the alarm server's), ``DBE_PROPERTY`` (units, limits, states changed). caproto
(1.3, ``ChannelData.publish``) sends every update to every subscription, whatever its mask,
and its callers pass no flags for a value write. So this adapter decides, as an EPICS record's
``monitor()`` does, which events an update is, and sends it only to the subscriptions whose
mask includes one of them:

- a value write (the channel's timestamp moved) is ``DBE_VALUE`` when the value moved by more
  than ``MDEL`` from the last value sent to value monitors (analog records: ai, ao, longin,
  longout; EPICS's ``recGblCheckDeadband``, NaN and infinities included), changed at all
  (bi, bo, mbbi, mbbo, stringin, stringout), or always (waveform: ``MPST`` "Always");
  ``DBE_LOG`` likewise with ``ADEL``;
- ``DBE_ALARM`` when severity or status differ from the last ones sent;
- ``DBE_PROPERTY`` when caproto publishes metadata (``write_metadata``).

Only the choice of subscriptions is ours: the updates go into caproto's subscription queue
as caproto's own ``publish`` puts them (queueing and sending to each client are caproto's).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from caproto import SubscriptionType
from caproto._data import SubscriptionUpdate
from caproto._dbr import _channel_type_by_name

#: Records whose value and archive monitors follow a deadband (``MDEL``/``ADEL``).
DEADBAND_RECORDS = frozenset({"ai", "ao", "longin", "longout"})
#: Records that post value and archive monitors only when the value changed.
ON_CHANGE_RECORDS = frozenset({"bi", "bo", "mbbi", "mbbo", "stringin", "stringout"})
#: Archive deadbands (``ADEL``) of the IOC's analog PVs: the archiver gets a clock or a
#: percentage once it moved this much; value monitors (``MDEL`` 0) get every change.
ARCHIVE_DEADBANDS: Mapping[str, float] = {
    "Progress": 1.0,
    "ElapsedTime": 1.0,
    "RemainingTime": 1.0,
}

_VALUE = SubscriptionType.DBE_VALUE
_LOG = SubscriptionType.DBE_LOG
_ALARM = SubscriptionType.DBE_ALARM
_PROPERTY = SubscriptionType.DBE_PROPERTY


def outside_deadband(last: Any, new: Any, deadband: float) -> bool:
    """EPICS base's ``recGblCheckDeadband``: has ``new`` moved more than ``deadband``?

    A negative deadband posts every time; NaN or an infinity against a finite value (or the
    other infinity) always counts as a move; NaN against NaN never does.
    """
    try:
        old, now = float(last), float(new)
    except (TypeError, ValueError):
        return bool(last != new)
    if math.isfinite(old) and math.isfinite(now):
        delta = abs(old - now)
    elif old == now or (math.isnan(old) and math.isnan(now)):
        delta = 0.0  # the same infinity, or NaN again
    else:
        delta = math.inf  # NaN or an infinity against anything else
    return delta > deadband


class EventFilter:
    """What one channel last sent to value and archive monitors, and its last alarm.

    :meth:`events` turns a publish into EPICS's event bits, as a record's ``monitor()`` does.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.record = getattr(channel, "record_type", None) or ""
        self.value_sent = channel.value  # MLST
        self.log_sent = channel.value  # ALST
        self.stamp = self._stamp()
        self.alarm = self._alarm()
        self.writing = 0  # writes of the channel under way (a putter may be running)

    def value_written(self) -> bool:
        """Whether the value changed since the last publish (its timestamp moved)."""
        return self._stamp() != self.stamp

    def alarm_changed(self) -> bool:
        return self._alarm() != self.alarm

    def _stamp(self) -> tuple[int, int]:
        stamp = self.channel.epics_timestamp
        return (int(stamp.secondsSinceEpoch), int(stamp.nanoSeconds))

    def _alarm(self) -> tuple[int, int]:
        alarm = self.channel.alarm
        return (int(alarm.severity), int(alarm.status))

    def _moved(self, last: Any, deadband_attr: str) -> bool:
        value = self.channel.value
        if self.record in DEADBAND_RECORDS:
            return outside_deadband(last, value, float(getattr(self.channel, deadband_attr, 0)))
        if self.record in ON_CHANGE_RECORDS:
            return bool(last != value)
        return True  # waveforms (MPST/APST "Always") and anything else: every write

    def events(self, flags: int) -> int:
        """The event bits of this publish; the state it compares against moves on with it."""
        events = 0
        if flags & _PROPERTY:
            events |= _PROPERTY
        stamp = self._stamp()
        if stamp != self.stamp:  # a value write (alarm and metadata publishes keep the stamp)
            self.stamp = stamp
            if self._moved(self.value_sent, "value_atol"):
                self.value_sent = self.channel.value
                events |= _VALUE
            if self._moved(self.log_sent, "log_atol"):
                self.log_sent = self.channel.value
                events |= _LOG
        alarm = self._alarm()
        if alarm != self.alarm:
            self.alarm = alarm
            events |= _ALARM
        return events


async def publish_filtered(channel: Any, events: int) -> None:
    """caproto's ``ChannelData.publish``, sending only to subscriptions asking for ``events``.

    The conversion cache is cleared first (a later subscriber must read the new value) and
    each data type is converted once per publish, as in caproto.
    """
    channel._content.clear()
    if not events:
        return
    for queue, syncs in list(channel._queues.items()):
        for sync, data_types in list(syncs.items()):
            for data_type_name, sub_specs in list(data_types.items()):
                eligible = tuple(
                    spec for spec in sub_specs if spec.mask & events and channel._is_eligible(spec)
                )
                if not eligible:
                    continue
                source = channel
                if sync is not None:
                    source = channel._snapshots.get(sync.s, {}).get(sync.m)
                    if source is None:
                        continue
                key = (data_type_name, sync)
                content = channel._content.get(key)
                if content is None:
                    content = await source._read(_channel_type_by_name[data_type_name])
                    channel._content[key] = content
                metadata, values = content
                await queue.put(SubscriptionUpdate(eligible, metadata, values, events, None))


def install_masks(pvdb: Mapping[str, Any], prefix: str) -> None:
    """Filter every PV's monitor updates by event mask (the fixed PVs, then each form's).

    The analog PVs named in :data:`ARCHIVE_DEADBANDS` get their ``ADEL`` here (their ``MDEL``
    stays 0: value monitors get every change). Record fields keep caproto's behaviour.
    """
    for name, channel in pvdb.items():
        if "." in name or getattr(channel, "_event_filter", None) is not None:
            continue
        deadband = ARCHIVE_DEADBANDS.get(name.removeprefix(prefix))
        if deadband is not None and hasattr(channel, "log_atol"):
            channel.log_atol = deadband
        event_filter = EventFilter(channel)
        channel._event_filter = event_filter
        channel.publish = functools.partial(_publish, channel, event_filter)
        channel.write = functools.partial(_write, channel, event_filter, channel.write)


async def _publish(channel: Any, event_filter: EventFilter, flags: int) -> None:
    if event_filter.writing and not flags & _PROPERTY and not event_filter.value_written():
        # an alarm change in the middle of a write (a putter clearing the alarm, caproto
        # raising WRITE on a refusal): it goes out with the write's value, as EPICS posts
        # alarm and value together once the record has processed
        channel._content.clear()
        return
    await publish_filtered(channel, event_filter.events(flags))


async def _write(channel: Any, event_filter: EventFilter, write: Any, *args: Any, **kw: Any) -> Any:
    event_filter.writing += 1
    try:
        return await write(*args, **kw)
    finally:
        event_filter.writing -= 1
        if not event_filter.writing and event_filter.alarm_changed():
            await publish_filtered(channel, event_filter.events(0))  # refused or skipped
