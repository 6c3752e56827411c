"""The IOC: PV groups composed into one, wired to the bridge, served over Channel Access."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from caproto.asyncio.server import start_server
from caproto.server import PVGroup, SubGroup

from .bridge import Bridge
from .events import Coalesced, DataUpdate, Progress, SinkHealth
from .pv_common import publish_units
from .pv_control import ControlGroup
from .pv_data import DataGroup, SinksGroup, data_group_class
from .pv_selection import SelectionGroup
from .pv_status import StatusGroup
from .registry import Registry

log = logging.getLogger(__name__)


class RunEngineIOC(PVGroup):
    """All PVs of the RunEngine IOC, flat under one prefix (``BL01:RE:State`` ...)."""

    selection = SubGroup(SelectionGroup, prefix="")
    control = SubGroup(ControlGroup, prefix="")
    status = SubGroup(StatusGroup, prefix="")
    data = SubGroup(DataGroup, prefix="")
    sinks = SubGroup(SinksGroup, prefix="")

    def __init__(self, *args: Any, registry: Registry, bridge: Bridge, **kwargs: Any) -> None:
        self.registry = registry
        self.bridge = bridge
        super().__init__(*args, **kwargs)

    @classmethod
    def with_data_capacity(cls, capacity: int) -> type[RunEngineIOC]:
        """The IOC with its Data:X/Y arrays ``capacity`` points long."""
        group = SubGroup(data_group_class(capacity), prefix="")
        return type(cls.__name__, (cls,), {"__doc__": cls.__doc__, "data": group})

    # the bridge's Publisher: events are shown by the status and data groups
    async def publish_event(self, event: Any) -> None:
        await self.status.publish_event(event)
        await self.data.publish_event(event)

    async def publish_progress(self, progress: Progress | None, now: float) -> None:
        await self.status.publish_progress(progress, now)

    async def publish_latest(self, item: Coalesced) -> None:
        if isinstance(item, DataUpdate):
            await self.data.publish_data(item.take())
        elif isinstance(item, SinkHealth):
            await self.sinks.publish_health(item)


async def serve(
    ioc: RunEngineIOC,
    *,
    interfaces: list[str] | None = None,
    log_pv_names: bool = False,
    shutdown_timeout: float = 10.0,
) -> int:
    """Serve until SIGINT/SIGTERM, then end any plan cleanly and return the exit code."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    received: list[str] = []

    def on_signal(signame: str) -> None:
        received.append(signame)
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)

    await publish_units(ioc.pvdb)
    await ioc.data.initialise()
    await ioc.selection.publish_names(ioc.registry.plan_names, ioc.registry.device_names)
    await ioc.status.say(
        f"ready: {len(ioc.registry.plan_names)} plans, {len(ioc.registry.device_names)} devices"
    )
    publisher = asyncio.ensure_future(ioc.bridge.publish_forever(ioc))
    server = asyncio.ensure_future(
        start_server(ioc.pvdb, interfaces=interfaces, log_pv_names=log_pv_names)
    )
    waiter = asyncio.ensure_future(stop_requested.wait())
    done, _ = await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if server in done:
        exc = server.exception()
        log.error("Channel Access server ended: %r", exc)
        exit_code = 1
    else:
        log.info("%s received: ending any plan cleanly, then exiting", received[0])
        await ioc.status.say(f"IOC shutting down ({received[0]})")
    clean = await ioc.bridge.shutdown(
        f"IOC shutting down ({received[0] if received else 'server ended'})", shutdown_timeout
    )
    # let the last events (state idle, plan finished) reach the clients
    await asyncio.sleep(0.1)
    for task in (publisher, server, waiter):
        task.cancel()
    await asyncio.gather(publisher, server, waiter, return_exceptions=True)
    if not clean:
        log.error("the worker did not end within %.1f s", shutdown_timeout)
        exit_code = exit_code or 2
    return exit_code
