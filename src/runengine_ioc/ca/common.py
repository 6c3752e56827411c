"""Small helpers shared by the PV groups (caproto side only)."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

from caproto import AlarmSeverity, AlarmStatus, ChannelType, SkipWrite, SubscriptionType
from caproto.server import pvproperty

from ..engine.events import Refused
from ..engine.registry import ArgumentError
from .put_checks import explain, plain

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
    """Whether a put to a command bo asks for its state 1 (True) or 0 (False).

    State 1 is the number 1 (of any CA type: 1, 1.0), the text ``1`` or the state's name
    (``Start``, ...); state 0 likewise (0, ``0``, ``Done``). Anything else (2, -1, 0.5, NaN,
    other text) is no state of the PV: it is refused (ArgumentError), so that junk never acts.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        text = value.strip()
        if text in (instance.enum_strings[1], "1"):
            return True
        if text in (instance.enum_strings[0], "0"):
            return False
    elif isinstance(value, int | float) and not isinstance(value, bool) and value in (0, 1):
        return value == 1
    elif hasattr(value, "item") and getattr(value, "size", 1) == 1:  # a numpy scalar
        return is_on(instance, value.item())
    states = f'0 or "{instance.enum_strings[0]}", 1 or "{instance.enum_strings[1]}"'
    raise ArgumentError(f"{plain(value)} is not a state of this PV ({states})")


def as_text(value: Any) -> str:
    """The text a client put; ArgumentError for a number put where text is expected."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    shown = plain(value)
    raise ArgumentError(
        f"expected text, got the {'numbers' if shown[:1] == '[' else 'number'} {shown}"
    )


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
                await group.context.status.refuse(f"{where}: {exc}")
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


_NUMERIC_TYPES = frozenset(
    {ChannelType.INT, ChannelType.FLOAT, ChannelType.ENUM, ChannelType.LONG, ChannelType.DOUBLE}
)


def check_enum_number(channel: Any, data: Any = None, data_type: Any = None) -> None:
    """Refuse a number that is no state index of an enum PV (caproto would truncate 1.7 to 1).

    Only whole numbers from 0 to the last state pass; text is left to the enum's own check.
    """
    if getattr(channel, "data_type", None) != ChannelType.ENUM or data is None:
        return
    try:
        if ChannelType(data_type) not in _NUMERIC_TYPES:
            return
        values = list(data) if hasattr(data, "__len__") else [data]
    except (TypeError, ValueError):
        return
    if not values:
        raise ValueError("no value given")
    first = float(values[0])
    states = len(getattr(channel, "enum_strings", ()) or ())
    if not (math.isfinite(first) and first == int(first) and 0 <= first < max(states, 1)):
        raise ValueError(f"{plain(values[0])} is not a state index of this PV (0 to {states - 1})")


#: The attribute naming, on a refused write's exception, the PV it was refused for.
REFUSED_PV_ATTR = "runengine_ioc_pv"


def mark_refused_pv(exc: BaseException, label: str) -> None:
    """Name the PV on a write's exception: caproto logs the refusal without it."""
    if getattr(exc, REFUSED_PV_ATTR, None) is None:
        setattr(exc, REFUSED_PV_ATTR, label)


def refused_pv(exc: BaseException | None) -> str | None:
    """The PV a write's exception was marked with, None if unmarked."""
    label = getattr(exc, REFUSED_PV_ATTR, None)
    return label if isinstance(label, str) else None


def guard_writes(
    pvdb: dict[str, Any], prefix: str, refuse: Callable[[str], Awaitable[None]]
) -> None:
    """Make every refused write of these PVs say why in Status, not only the putters' own.

    caproto turns away some values before any putter runs (a value too long for the PV, a
    string that is no enum state, a type that does not convert): each such refusal gets its
    Status line too. Refusals the putters report themselves (ArgumentError, Refused) are not
    reported twice. Record fields (``PV.DESC`` ...) are left to caproto.
    """
    for name, channel in pvdb.items():
        if "." in name:
            continue
        original = channel.write_from_dbr
        label = name.removeprefix(prefix)

        async def write_from_dbr(
            *args: Any,
            _original: Any = original,
            _label: str = label,
            _channel: Any = channel,
            **kwargs: Any,
        ) -> Any:
            try:
                check_enum_number(_channel, *args[:2])
                return await _original(*args, **kwargs)
            except Exception as exc:
                mark_refused_pv(exc, _label)  # for the one log line (ca/refusal_log.py)
                if not isinstance(exc, ArgumentError | Refused):
                    await refuse(f"{_label}: {explain(exc, _channel, *args[:2])}")
                raise

        channel.write_from_dbr = write_from_dbr
