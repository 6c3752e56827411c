"""The Heartbeat PV: a count that goes up once a second while the IOC and its worker are well.

An alarm server or a watchdog cannot tell a quiet IOC from a dead one by State alone (State
reads ``idle`` for hours). Heartbeat counts on the event loop, so it stops when the loop is
blocked, when the server is no longer served, and when the worker says it is unwell (its
RunEngine panicked, or asking its state fails): a client alarms on a count that stalls,
and the PV itself goes to MAJOR alarm while the worker is unwell (an alarm server sees that;
a blocked loop or a dead process shows as a stalled count or a disconnection).
"""

from __future__ import annotations

import logging
from typing import Any

from caproto import AlarmSeverity

from .common import pv, write_numeric_alarmed
from .context import IOCGroup

log = logging.getLogger(__name__)

#: Seconds between counts.
HEARTBEAT_PERIOD = 1.0
#: Worker states in which the heartbeat stops.
UNHEALTHY_STATES = frozenset({"panicked"})
#: The count wraps here, within a longin's 32 bits.
HEARTBEAT_WRAP = 2**31 - 1


class HeartbeatGroup(IOCGroup):
    """Heartbeat: counts once a second while healthy (a longin, read-only)."""

    heartbeat = pv(
        "Heartbeat",
        "Counts once a second while healthy",
        value=0,
        record="longin",
        read_only=True,
    )

    _warned = False

    def healthy(self) -> bool:
        """Whether the worker answers and its RunEngine has not panicked."""
        context = getattr(self, "context", None)
        if context is None:
            return False
        try:
            well = context.commands.state not in UNHEALTHY_STATES
        except Exception as exc:  # a worker that cannot say its state is not well
            if not self._warned:
                log.warning("heartbeat paused: the worker's state is unknown (%s)", exc)
            self._warned = True
            return False
        self._warned = self._warned and not well  # said once per spell
        return well

    @heartbeat.scan(period=HEARTBEAT_PERIOD)  # type: ignore[no-redef]
    async def heartbeat(self, instance: Any, async_lib: Any) -> None:
        if self.healthy():
            count = (int(instance.value) + 1) % HEARTBEAT_WRAP
            await write_numeric_alarmed(instance, count, AlarmSeverity.NO_ALARM)
        elif instance.alarm.severity != AlarmSeverity.MAJOR_ALARM:
            # the count stops; an alarm server sees MAJOR at once, not only a stale number
            await write_numeric_alarmed(instance, instance.value, AlarmSeverity.MAJOR_ALARM)
