"""The one place that relies on bluesky internals (no public API offers these yet).

Kept small on purpose: if bluesky changes, this is the file to mend.
"""

from __future__ import annotations

from typing import Any

#: The message bluesky's RunEngine processes when a suspender lets the plan go on.
RESUME_FROM_SUSPENDER = "_resume_from_suspender"


def describe_suspender(suspender: Any) -> str:
    """Which suspender, on which signal, and its message, in one short phrase."""
    signal = getattr(suspender, "_sig", None)
    where = getattr(signal, "name", "") or ""
    pvname = getattr(signal, "pvname", None)
    if pvname:
        where = f"{where} ({pvname})" if where else str(pvname)
    text = type(suspender).__name__ + (f" on {where}" if where else "")
    message = getattr(suspender, "_tripped_message", "")
    return f"{text}: {message}" if message else text
