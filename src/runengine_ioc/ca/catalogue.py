"""The one list of the PVs the IOC serves: README's table is checked against it, and the
screens, the archiver list and the alarm configuration are generated from it.

It is read off the PV groups themselves (their pvproperties' names, record types, DESC and
whether clients may write), so it cannot drift from what is served. Plan forms are described
by :func:`form_entries` from the registry's parameter descriptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup

from ..access.acf import DEFAULT_GROUP
from ..access.groups import group_of
from ..engine.catalog import RegistryView


@dataclass(frozen=True)
class CatalogueEntry:
    """One served PV (without the IOC's prefix).

    Attributes
    ----------
    name
        The PV's name after the prefix (``State``, ``Data:X``, ``scan:num``).
    record
        The EPICS record type it behaves as (``mbbi``, ``waveform``, ...).
    meaning
        Its description (the record's DESC).
    writable
        Whether clients may put to it.
    group
        The PV group that serves it (``control``, ``status``, ... or ``form``).
    dtype
        The Channel Access type name (``ENUM``, ``CHAR``, ``DOUBLE``, ...).
    length
        Elements of an array PV (1 for a scalar).
    units
        Engineering units (EGU), ``""`` when none.
    states
        The enum states of an mbbi/mbbo/bi/bo, in order.
    access_group
        The EPICS access security group the PV belongs to by default (``DEFAULT``,
        ``CONTROL``, ``SELECT``, ``ADMIN``, ``QUEUE``; ``access.groups``); the policy
        file's ``pv_groups`` may assign others when the IOC runs.
    """

    name: str
    record: str
    meaning: str
    writable: bool
    group: str
    dtype: str
    length: int = 1
    units: str = ""
    states: tuple[str, ...] = ()
    access_group: str = DEFAULT_GROUP


_PY_TYPES = {
    float: ChannelType.DOUBLE,
    int: ChannelType.LONG,
    str: ChannelType.STRING,
    bool: ChannelType.ENUM,
}


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, ChannelType):
        return dtype.name
    return _PY_TYPES.get(dtype, ChannelType.STRING).name


def _entry(prefix: str, group: str, prop: Any) -> CatalogueEntry:
    spec = prop.pvspec
    kwargs = spec.cls_kwargs or {}
    name = prefix + spec.name
    return CatalogueEntry(
        name=name,
        record=spec.record or "",
        meaning=spec.doc or "",
        writable=not spec.read_only,
        group=group,
        dtype=_dtype_name(spec.dtype),
        length=spec.max_length or 1,
        units=kwargs.get("units", ""),
        states=tuple(kwargs.get("enum_strings", ())),
        access_group=group_of(name, form=group == "form", writable=not spec.read_only),
    )


def _walk(cls: type[PVGroup], prefix: str, group: str) -> Iterator[CatalogueEntry]:
    for attr, prop in cls._pvs_.items():
        if "." not in attr:
            yield _entry(prefix, group, prop)
    for attr, sub in cls._subgroups_.items():
        yield from _walk(sub.group_cls, prefix + sub.prefix, attr)


def catalogue(ioc_class: type[PVGroup]) -> list[CatalogueEntry]:
    """The fixed PVs of an IOC class (the plan forms come from :func:`form_entries`)."""
    return list(_walk(ioc_class, "", ""))


def form_entries(registry: RegistryView, form_class: Any) -> list[CatalogueEntry]:
    """The PVs of every plan's form, as built for this registry."""
    entries: list[CatalogueEntry] = []
    for plan_name in registry.plan_names:
        cls = form_class(plan_name, registry.parameters(plan_name))
        entries.extend(_walk(cls, f"{plan_name}:", "form"))
    return entries
