"""An Archiver Appliance PV list, from the PV catalogue: what to archive, and how.

The file is the list the appliance's bulk ``archivePV`` call takes: one object per PV with
``pv``, ``samplingmethod`` (``MONITOR`` or ``SCAN``) and ``samplingperiod`` (seconds). The
policy, PV by PV:

- ``MONITOR`` for what changes at events and must not be missed: State, ExitStatus, Status,
  Busy, ScanId, RunUid, PlanCount, the selection and every form field (who asked for what),
  Sinks:*, Heartbeat and the Stats:* results (once per run).
- ``SCAN`` every second for per-point values (Progress, CurrentPoint, the times), which change
  up to ``--max-rate`` times a second during a run: a trend, not every point. ``SCAN`` every
  10 s for Diag:* (read on demand by the IOC).
- **Left out**: the ``Data:*`` arrays (``--data-capacity`` doubles each, rewritten at every
  point: megabytes a minute, and the runs' own files already hold every reading losslessly),
  Data:LastEvent (the same data as JSON), and the descriptions that only change on Reload
  (PlanList, DeviceList, PlanDoc, Profile, DeviceInfo, each form's Doc/Schema). The command
  PVs (Start, Pause, ..., any writable ``bo`` whose state 0 is ``Done``) are left out too:
  their effect is in State and Status. Each form's Args (what its Start would run) is kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..ca.catalogue import CatalogueEntry

#: Event-driven values: archive every change.
MONITORED = frozenset(
    {
        "State",
        "ExitStatus",
        "Status",
        "Busy",
        "ScanId",
        "RunUid",
        "PlanCount",
        "PlanName",
        "PlanArgs",
        "Metadata",
        "Submit",
        "Heartbeat",
    }
)
#: Per-point values: one sample a second is a trend.
PER_POINT = frozenset({"Progress", "CurrentPoint", "TotalPoints", "ElapsedTime", "RemainingTime"})
#: Static between Reloads.
STATIC = frozenset({"PlanList", "DeviceList", "PlanDoc", "Profile", "DeviceInfo"})


def is_command(entry: CatalogueEntry) -> bool:
    """A momentary command button (Start, Pause, Reload, Lock:Take...): a writable bo whose
    state 0 is ``Done``; its effect shows in State, Status and the audit log."""
    return entry.record == "bo" and entry.writable and entry.states[:1] == ("Done",)


_FORM_STATIC = ("Doc", "Schema")


@dataclass(frozen=True)
class ArchivePolicy:
    """How one PV is archived: ``method`` is ``MONITOR``, ``SCAN`` or ``""`` (left out)."""

    name: str
    method: str
    period: float
    why: str


def policy(entry: CatalogueEntry) -> ArchivePolicy:
    """The archiving of one PV of the catalogue (fixed or form)."""
    name = entry.name
    if name.startswith("Data:"):
        return ArchivePolicy(name, "", 0.0, "live-plot arrays/JSON: the run files hold the data")
    if is_command(entry):
        return ArchivePolicy(name, "", 0.0, "a command: its effect is in State and Status")
    if name in STATIC:
        return ArchivePolicy(name, "", 0.0, "changes only on Reload")
    if entry.group == "form":
        if name.rsplit(":", 1)[-1] in _FORM_STATIC:
            return ArchivePolicy(name, "", 0.0, "the form's description, changes only on Reload")
        return ArchivePolicy(name, "MONITOR", 1.0, "a form setting: every change")
    if name in PER_POINT:
        return ArchivePolicy(name, "SCAN", 1.0, "per point: a 1 s trend")
    if name.startswith("Diag:"):
        return ArchivePolicy(name, "SCAN", 10.0, "process diagnostics: a 10 s trend")
    if name in MONITORED or name.startswith(("Sinks:", "Stats:")):
        return ArchivePolicy(name, "MONITOR", 1.0, "event-driven: every change")
    if entry.length > 1:
        return ArchivePolicy(name, "", 0.0, "an array not listed for archiving")
    return ArchivePolicy(name, "MONITOR", 1.0, "a scalar: every change")


def render(entries: Sequence[CatalogueEntry], prefix: str) -> str:
    """The appliance's bulk ``archivePV`` JSON list for the PVs archived."""
    listed = [
        {
            "pv": f"{prefix}{p.name}",
            "samplingmethod": p.method,
            "samplingperiod": str(p.period),
        }
        for p in (policy(entry) for entry in entries)
        if p.method
    ]
    return json.dumps(listed, indent=1) + "\n"


def left_out(entries: Sequence[CatalogueEntry]) -> list[ArchivePolicy]:
    """The PVs not archived, each with why (written beside the list, for the reader)."""
    return [p for p in (policy(entry) for entry in entries) if not p.method]
