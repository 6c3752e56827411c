"""Puts refused in plain words: text too long to read back, values caproto cannot convert.

Two things caproto lets through or explains in its own terms:

- A char waveform (``PlanArgs``, ``Submit``, a form's JSON field...) of ``NELM`` characters
  holds at most ``NELM - 1`` bytes of text and its terminating NUL: EPICS base's ``caput -S``
  refuses longer text itself ("Invalid element count requested") and ``caget -S`` reads that
  much. caproto accepts any length from a caproto client and stores it, so an EPICS client then
  reads broken JSON. :func:`guard_lengths` refuses such text, saying why in Status.
- A value caproto cannot convert fails with ``CaprotoConversionError`` and, mostly, no message
  (a DBR_STRING put to a char waveform: ``caput`` without ``-S``; a string that is no enum
  state from a client that does not check states itself). :func:`explain` gives the reason.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from caproto import ChannelType

#: What a client sends with each request type (``data_type`` of the put, DBR_TIME_* etc. alike).
_STRING_TYPES = frozenset({ChannelType.STRING, ChannelType.STS_STRING, ChannelType.TIME_STRING})


class TextTooLong(Exception):
    """Text that the PV could not give back whole to an EPICS client."""


def plain(value: Any) -> str:
    """A client's value as an operator would write it: ``2``, ``1.5``, ``"motr"``, not reprs."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, bytes | bytearray):
        value = bytes(value).rstrip(b"\0").decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        shown = ", ".join(plain(v) for v in value[:5])
        return f"[{shown}{', ...' if len(value) > 5 else ''}]"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return str(int(value))
        return f"{value:g}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f'"{text}"'
    return str(value)


def _first(data: Any) -> Any:
    """The first element of what a client sent (an array of one string, mostly)."""
    if isinstance(data, str | bytes | bytearray):
        return data
    try:
        return _first(data[0]) if len(data) else ""
    except (TypeError, IndexError, KeyError):
        return data


def explain(exc: BaseException, channel: Any, data: Any = None, data_type: Any = None) -> str:
    """The reason a put failed, in words: caproto's message, or what caproto left unsaid."""
    text = str(exc)
    try:
        sent = ChannelType(data_type) if data_type is not None else None
    except ValueError:
        sent = None
    kind = getattr(channel, "data_type", None)
    if kind == ChannelType.CHAR and getattr(channel, "max_length", 1) > 1 and sent in _STRING_TYPES:
        return (
            "text must be sent as an array of characters: use caput -S (without -S, caput "
            "sends one 40-character string, which a long-string PV does not take)"
        )
    states = getattr(channel, "enum_strings", None)
    if kind == ChannelType.ENUM and states and sent in _STRING_TYPES:
        listed = ", ".join(f'"{s}"' for s in states)
        return f"{plain(_first(data))} is not one of its states ({listed})"
    if not text:
        return f"the value could not be converted to this PV's type ({type(exc).__name__})"
    return text


def text_bytes(data: Any) -> int | None:
    """How many bytes of text a char put carries (trailing NULs not counted); None if not text."""
    if isinstance(data, str):
        raw = data.encode("utf-8")
    elif isinstance(data, bytes | bytearray):
        raw = bytes(data)
    elif hasattr(data, "tobytes"):
        raw = data.tobytes()
    else:
        return None
    return len(raw.rstrip(b"\0"))


def guard_lengths(
    pvdb: Mapping[str, Any], prefix: str, refuse: Callable[[str], Awaitable[None]]
) -> None:
    """Refuse text a long-string PV could not give back whole (more than ``NELM - 1`` bytes).

    Installed after :func:`~runengine_ioc.ca.common.guard_writes`, so it runs first; its
    refusal says why in Status itself.
    """
    for name, channel in pvdb.items():
        if "." in name or channel.data_type != ChannelType.CHAR or channel.max_length <= 1:
            continue
        original = channel.write_from_dbr
        label = name.removeprefix(prefix)

        async def write_from_dbr(
            data: Any,
            *args: Any,
            _original: Any = original,
            _label: str = label,
            _room: int = channel.max_length - 1,
            **kwargs: Any,
        ) -> Any:
            size = text_bytes(data)
            if size is not None and size > _room:
                text = (
                    f"{_label}: {size} bytes of text, more than it holds ({_room} bytes): "
                    "EPICS clients (caget -S) would read it cut; nothing was changed"
                )
                await refuse(text)
                raise TextTooLong(text)
            return await _original(data, *args, **kwargs)

        channel.write_from_dbr = write_from_dbr
