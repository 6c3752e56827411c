"""Small helpers shared by the PV groups (caproto side only)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from caproto import AlarmSeverity, AlarmStatus, ChannelType, SkipWrite, SubscriptionType
from caproto.server import pvproperty

from .events import Refused
from .registry import ArgumentError

#: Longest text accepted in a long-string (char waveform) PV, in bytes.
LONG_STRING_LENGTH = 4096
#: Room in the string-array PVs (PlanList, DeviceList).
NAME_LIST_LENGTH = 256


def pv(name: str, doc: str, **kwargs: Any) -> Any:
    """A pvproperty with its own alarm (caproto otherwise shares one per group)."""
    return pvproperty(name=name, doc=doc, alarm_group=name, **kwargs)


def long_string(
    name: str,
    doc: str,
    *,
    value: str = "",
    read_only: bool = False,
    length: int = LONG_STRING_LENGTH,
    **kwargs: Any,
) -> Any:
    """A char waveform carrying UTF-8 text, for JSON and messages (`caget -S`, `caput -S`)."""
    return pv(
        name,
        doc,
        value=value,
        dtype=ChannelType.CHAR,
        max_length=length,
        string_encoding="utf-8",
        record="waveform",
        read_only=read_only,
        **kwargs,
    )


def command_bo(name: str, doc: str, on_name: str) -> Any:
    """A momentary command button: put 1 to act; it reads 0 again once accepted."""
    return pv(
        name, doc, value=0, dtype=ChannelType.ENUM, enum_strings=("Done", on_name), record="bo"
    )


def is_on(instance: Any, value: Any) -> bool:
    """True when a put to a bo asks for its '1' state (by index or by name)."""
    if isinstance(value, str):
        return value == instance.enum_strings[1] or value.strip() == "1"
    return bool(value)


def clip_text(text: str, limit: int = LONG_STRING_LENGTH - 1) -> str:
    """Keep a message within a char waveform (UTF-8 bytes), marking the cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "..."


async def write_alarmed(channel: Any, value: Any, severity: AlarmSeverity) -> None:
    """Write a value with the alarm severity the IOC decides (STATE alarm when raised)."""
    status = AlarmStatus.STATE if severity != AlarmSeverity.NO_ALARM else AlarmStatus.NO_ALARM
    changed = channel.alarm.severity != severity or channel.alarm.status != status
    if changed:
        # not published on its own: monitors get value and alarm in one update
        await channel.alarm.write(severity=severity, status=status, publish=False)
    await channel.write(value)
    if changed:
        # the record's SEVR/STAT fields follow
        await channel.alarm.publish(SubscriptionType.DBE_ALARM, except_for=(channel,))


async def write_numeric_alarmed(
    channel: Any, value: Any, severity: AlarmSeverity, status: AlarmStatus = AlarmStatus.STATE
) -> None:
    """Like :func:`write_alarmed`, for numeric PVs, whose every write resets the alarm from
    their limits: the value goes first, then the alarm (two monitor updates when it changes)."""
    if severity == AlarmSeverity.NO_ALARM:
        status = AlarmStatus.NO_ALARM
    await channel.write(value)
    if channel.alarm.severity != severity or channel.alarm.status != status:
        await channel.alarm.write(severity=severity, status=status)


async def clear_put_alarm(channel: Any) -> None:
    """Clear the WRITE alarm caproto raises on a refused put, once a put succeeds."""
    if channel.alarm.severity != AlarmSeverity.NO_ALARM:
        await channel.alarm.write(severity=AlarmSeverity.NO_ALARM, status=AlarmStatus.NO_ALARM)


Putter = Callable[[Any, Any, Any], Awaitable[Any]]


def refusals_to_status(label: str | Callable[[Any], str]) -> Callable[[Putter], Putter]:
    """Decorate a putter: a refusal fails the put and says why in Status, at once.

    ``label`` names the PV in the message; a callable gets the group (for generated groups).
    """

    def decorate(putter: Putter) -> Putter:
        @functools.wraps(putter)
        async def wrapped(group: Any, instance: Any, value: Any) -> Any:
            try:
                result = await putter(group, instance, value)
            except (ArgumentError, Refused) as exc:
                where = label(group) if callable(label) else label
                await group.parent.status.refuse(f"{where}: {exc}")
                raise
            except SkipWrite:
                await clear_put_alarm(instance)
                raise
            await clear_put_alarm(instance)
            return result

        return wrapped

    return decorate


async def publish_units(pvdb: dict[str, Any]) -> None:
    """Copy each PV's units into its record's EGU field (caproto does not link them)."""
    for channel in pvdb.values():
        units = getattr(channel, "units", "")
        fields = getattr(channel, "field_inst", None)
        egu = getattr(fields, "engineering_units", None)
        if units and egu is not None:
            await egu.write(units)
