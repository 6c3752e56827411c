"""Disk:Status and Disk:FreeMB: whether the data directory can take another run.

The files sink refuses a plan (before it is accepted) when its directory cannot be written or
has less free space than ``--min-free-mb``; these PVs say so beforehand, with a MAJOR alarm,
so that an operator or an alarm server sees a full disk before a Start is refused. The state
is read once a second off the event loop (a ``statvfs`` and an empty file created and removed).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import PVGroup

from ..data.disk import DiskState
from .common import clip_text, long_string, pv, write_alarmed, write_numeric_alarmed

log = logging.getLogger(__name__)

#: Seconds between two looks at the data directory.
DISK_PERIOD = 1.0


class DiskGroup(PVGroup):
    """Disk:Status (text, MAJOR when no run may start) and Disk:FreeMB.

    :attr:`source` is set by whoever builds the IOC (the files sink's ``disk_state``); until
    then the PVs say the disk is not watched.
    """

    status = long_string(
        "Disk:Status",
        "Data directory: room for runs, in words",
        value="not watched",
        read_only=True,
    )
    free_mb = pv(
        "Disk:FreeMB",
        "Free space in the data directory",
        value=math.nan,
        record="ai",
        units="MB",
        precision=1,
        read_only=True,
    )

    source: Callable[[], DiskState] | None = None
    _last: DiskState | None = None

    async def publish_state(self, state: DiskState) -> None:
        """Show a state; a change of verdict is logged once."""
        if self._last is None or self._last.problem != state.problem:
            if state.problem:
                log.error("disk: %s", state.problem)
            elif self._last is not None:
                log.info("disk: %s", state.describe())
        self._last = state
        severity = AlarmSeverity.MAJOR_ALARM if state.problem else AlarmSeverity.NO_ALARM
        await write_alarmed(self.status, clip_text(state.describe()), severity)
        low = state.free_mb < state.min_free_mb  # NaN (unknown) is not low
        status = AlarmStatus.LOLO if low else AlarmStatus.STATE
        await write_numeric_alarmed(self.free_mb, state.free_mb, severity, status)

    @status.scan(period=DISK_PERIOD)  # type: ignore[no-redef]
    async def status(self, instance: Any, async_lib: Any) -> None:
        if self.source is None:
            return
        try:
            state = await asyncio.to_thread(self.source)
        except Exception:  # never let the scan die: the PVs would freeze
            log.exception("checking the data directory failed")
            return
        await self.publish_state(state)
