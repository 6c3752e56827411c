"""Which access security group each PV belongs to, unless the configuration says otherwise.

``DEFAULT`` (reading) for everything not named here; ``CONTROL`` for what starts, pauses or
ends a plan and for the baton; ``SELECT`` for what chooses a plan (PlanName, PlanArgs,
Metadata, the plan forms' fields); ``ADMIN`` for Reload, AccessReload and breaking the
baton; ``QUEUE`` for the plan queue's PVs (``Queue:...``). Overrides map PV names (after
the prefix; ``*`` wildcards allowed, first match wins) to other groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from .acf import DEFAULT_GROUP

CONTROL_PVS = frozenset(
    {
        "Start",
        "Pause",
        "PauseDeferred",
        "Resume",
        "Stop",
        "Abort",
        "Halt",
        "Submit",
        "Lock:Take",
        "Lock:Release",
    }
)
SELECT_PVS = frozenset({"PlanName", "PlanArgs", "Metadata"})
ADMIN_PVS = frozenset({"Reload", "AccessReload", "Lock:Break"})
#: The suffixes of a plan form that belong to the IOC (the rest are the plan's parameters).
FORM_READ_ONLY = frozenset({"Doc", "Schema", "Args"})


def default_group(name: str, *, form: bool = False, writable: bool = True) -> str:
    """The group of the PV ``name`` (after the prefix); ``form``: a plan form's PV."""
    if form:
        suffix = name.rpartition(":")[2]
        if suffix == "Start":
            return "CONTROL"
        return "SELECT" if writable and suffix not in FORM_READ_ONLY else DEFAULT_GROUP
    if name in CONTROL_PVS:
        return "CONTROL"
    if name in SELECT_PVS:
        return "SELECT"
    if name in ADMIN_PVS:
        return "ADMIN"
    if name.startswith("Queue:") and writable:
        return "QUEUE"
    return DEFAULT_GROUP


def group_of(
    name: str,
    overrides: Mapping[str, str] | None = None,
    *,
    form: bool = False,
    writable: bool = True,
) -> str:
    """The group of ``name``: the first override whose pattern matches, else the default."""
    for pattern, group in (overrides or {}).items():
        if fnmatchcase(name, pattern):
            return group
    return default_group(name, form=form, writable=writable)
