"""Diagnostics PVs: the IOC process's memory, threads, asyncio tasks and clients, read on
demand.

The values are taken when a client reads the PV (no timer, no RunEngine involved), so
``caget`` always sees the present figure; a monitor sees the figure of the last read.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from caproto.server import PVGroup

from .common import pv


def _proc_status(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0])
    except (OSError, ValueError):
        pass
    return None


class DiagGroup(PVGroup):
    """Diag:RSS, Diag:Threads, Diag:Tasks, Diag:Clients."""

    #: The server whose clients Diag:Clients counts (set by ``serve``).
    server: Any = None

    rss = pv(
        "RSS",
        "Resident memory of the IOC process",
        value=0.0,
        record="ai",
        units="MB",
        precision=1,
        read_only=True,
    )
    threads = pv("Threads", "Threads in the IOC process", value=0, record="longin", read_only=True)
    tasks = pv("Tasks", "asyncio tasks in the IOC's loop", value=0, record="longin", read_only=True)
    clients = pv(
        "Clients", "Channel Access clients connected", value=0, record="longin", read_only=True
    )

    @rss.getter  # type: ignore[no-redef]
    async def rss(self, instance: Any) -> float:
        kb = _proc_status("VmRSS")
        return kb / 1024.0 if kb is not None else 0.0

    @threads.getter  # type: ignore[no-redef]
    async def threads(self, instance: Any) -> int:
        count = _proc_status("Threads")
        return count if count is not None else threading.active_count()

    @tasks.getter  # type: ignore[no-redef]
    async def tasks(self, instance: Any) -> int:
        return len(asyncio.all_tasks())

    @clients.getter  # type: ignore[no-redef]
    async def clients(self, instance: Any) -> int:
        return len(self.server.circuits) if self.server is not None else 0
