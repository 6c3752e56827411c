"""Record fields belong to the IOC: a client's put to one is refused, and Status says why.

caproto serves every PV as a record whose fields (``State.ZRST``, ``PlanArgs.DESC``,
``scan:num.DRVL``...) a client may write, and several of them are live: ``ZRST`` renames an
enum state (after which the IOC's own write of ``idle`` is no state and fails), ``EGU`` and
``PREC`` change what every display shows, ``DRVL``/``HOPR`` change the limits a spinbox
enforces, ``MDEL``/``ADEL`` change what the archiver receives. They describe the IOC's PVs, so
the IOC keeps them: every field put is refused before caproto acts on it, fails the put (as a
put to a ``SPC_NOMOD`` field of EPICS base does) and says why in Status, like any refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from caproto import ChannelType

#: Fields a client may still write (none: see README, "Record fields"). A field named here
#: keeps caproto's own behaviour.
CLIENT_FIELDS: frozenset[str] = frozenset()


class FieldReadOnly(Exception):
    """A client put to a record field the IOC owns."""


def refusal(label: str, field: str) -> str:
    """The Status line of a refused field put (``State.ZRST: ...``)."""
    return (
        f"{label}.{field}: record fields belong to the IOC (states, units, limits, "
        "descriptions, deadbands); read-only for clients"
    )


def guard_fields(
    pvdb: Mapping[str, Any], prefix: str, refuse: Callable[[str], Awaitable[None]]
) -> None:
    """Refuse client puts to the record fields of these PVs, each saying why in Status.

    Called once for the fixed PVs and once for each form as it is built, next to
    :func:`~runengine_ioc.ca.common.guard_writes` (which gates the values themselves). The IOC
    still writes its fields directly (``field.write``), which does not pass through here.
    """
    for name, channel in pvdb.items():
        if "." in name:  # caproto caches 'PV.FIELD' lookups in the same dictionary
            continue
        label = name.removeprefix(prefix)
        fields: Mapping[str, Any] = getattr(channel, "fields", None) or {}
        for field_name, field in fields.items():
            if field_name in CLIENT_FIELDS or field is channel:
                continue
            field.write_from_dbr = _refusing_writer(label, field_name, refuse)


def _refusing_writer(
    label: str, field: str, refuse: Callable[[str], Awaitable[None]]
) -> Callable[..., Awaitable[None]]:
    async def write_from_dbr(*args: Any, **kwargs: Any) -> None:
        text = refusal(label, field)
        await refuse(text)
        raise FieldReadOnly(text)

    return write_from_dbr


#: A waveform's ``FTVL`` for each caproto data type (caproto leaves it at its first state,
#: STRING, so a client reading ``PlanArgs.FTVL`` was told STRING for a char array).
_FTVL = {
    ChannelType.STRING: "STRING",
    ChannelType.CHAR: "CHAR",
    ChannelType.INT: "SHORT",
    ChannelType.LONG: "LONG",
    ChannelType.FLOAT: "FLOAT",
    ChannelType.DOUBLE: "DOUBLE",
    ChannelType.ENUM: "ENUM",
}


async def publish_field_types(pvdb: Mapping[str, Any]) -> None:
    """Give every waveform its true ``FTVL`` (the IOC writes its own fields directly)."""
    for name, channel in pvdb.items():
        field = None if "." in name else (getattr(channel, "fields", None) or {}).get("FTVL")
        ftvl = _FTVL.get(channel.data_type)
        if field is not None and ftvl is not None and field.value != ftvl:
            await field.write(ftvl)
