"""The IOC: PV groups composed into one, wired to the bridge, served over Channel Access."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from caproto.server import PVGroup, SubGroup

from ..engine.bridge import Bridge
from ..engine.catalog import RegistryView, ServedProfile
from ..engine.events import Coalesced, DataUpdate, Progress, Refused, SinkHealth, WorkerEvent
from ..queue.plan_queue import PlanQueue
from .baton import GateGroup
from .common import guard_writes, publish_units
from .context import IOCContext, IOCGroup
from .control import ControlGroup
from .data import DataGroup, SinksGroup, data_group_class
from .diag import DiagGroup
from .disk import DiskGroup
from .fanout import DEFAULT_SEND_TIMEOUT, FanoutContext
from .fields import guard_fields, publish_field_types
from .forms import PlanForm, build_form
from .gate import Gate, GatedCommands, GateSettings
from .heartbeat import HeartbeatGroup
from .limits import epics_limits
from .masks import install_masks
from .put_checks import guard_lengths
from .queue import QueueGroup, identify_putters
from .selection import SelectionGroup
from .setup import SetupGroup
from .status import StatusGroup
from .submit import SubmitGroup

log = logging.getLogger(__name__)

#: At shutdown, how long the last events may take to be published before the server ends.
DRAIN_TIMEOUT = 2.0


class RunEngineIOC(PVGroup):
    """All PVs of the RunEngine IOC, flat under one prefix (``BL01:RE:State`` ...).

    Besides the fixed groups, each registered plan gets a form (``<prefix><plan>:...``);
    Reload adds, replaces and retires forms while the server runs.
    """

    selection = SubGroup(SelectionGroup, prefix="")
    control = SubGroup(ControlGroup, prefix="")
    submission = SubGroup(SubmitGroup, prefix="")
    status = SubGroup(StatusGroup, prefix="")
    setup = SubGroup(SetupGroup, prefix="")
    data = SubGroup(DataGroup, prefix="")
    sinks = SubGroup(SinksGroup, prefix="")
    disk = SubGroup(DiskGroup, prefix="")
    diag = SubGroup(DiagGroup, prefix="Diag:")
    gate_pvs = SubGroup(GateGroup, prefix="")
    heartbeat = SubGroup(HeartbeatGroup, prefix="")
    queue_pvs = SubGroup(QueueGroup, prefix="")

    def __init__(
        self,
        *args: Any,
        registry: RegistryView,
        bridge: Bridge,
        reloader: Callable[[], Awaitable[ServedProfile]] | None = None,
        description: str = "",
        gate: GateSettings | None = None,
        queue: PlanQueue | None = None,
        **kwargs: Any,
    ) -> None:
        self.bridge = bridge
        self.description = description
        super().__init__(*args, **kwargs)
        # access security, the baton, the plan policy and the audit log (ca/gate.py)
        self.gate = Gate(
            gate or GateSettings(), refuse=self._refuse, registry=lambda: self.registry
        )
        self.gate_pvs.gate = self.gate
        self.gate.on_audit = self.gate_pvs.show_audit
        self.context = IOCContext(
            commands=GatedCommands(bridge, self.gate),
            registry=registry,
            status=self.status,
            selection=self.selection,
            start=self.control.start,
            reloader=reloader,
            apply_setup=self.apply_setup,
            queue=self.queue_pvs,
        )
        for group in self.groups.values():
            if isinstance(group, IOCGroup):
                group.context = self.context
        guard_writes(self.pvdb, self.prefix, self._refuse)  # each form guards its own PVs
        guard_fields(self.pvdb, self.prefix, self._refuse)  # record fields are the IOC's
        guard_lengths(self.pvdb, self.prefix, self._refuse)  # text EPICS can read back
        install_masks(self.pvdb, self.prefix)  # monitors get the events their mask asks for
        self.gate.install(self.pvdb, self.prefix)
        identify_putters(self.pvdb, self.prefix)  # who adds each queue item
        self.queue_pvs.attach(queue or PlanQueue.in_memory())
        self.forms: dict[str, PlanForm] = {}
        for name in registry.plan_names if registry is not None else ():
            self._add_form(name)

    @property
    def registry(self) -> RegistryView:
        return self.context.registry

    async def _refuse(self, text: str) -> None:
        await self.status.refuse(text)

    def _add_form(self, name: str) -> PlanForm:
        form = build_form(name, self.registry, self.prefix, self, self.context)
        clash = set(form.pvdb) & set(self.pvdb)
        if clash:
            raise ValueError(f"plan {name!r}: its form's PVs clash with {sorted(clash)}")
        self.forms[name] = form
        self.pvdb.update(form.pvdb)
        guard_writes(form.pvdb, self.prefix, self._refuse)
        guard_fields(form.pvdb, self.prefix, self._refuse)
        guard_lengths(form.pvdb, self.prefix, self._refuse)
        install_masks(form.pvdb, self.prefix)
        self.gate.install(form.pvdb, self.prefix, form=True)
        identify_putters(form.pvdb, self.prefix)
        return form

    def _retire_form(self, name: str) -> None:
        form = self.forms.pop(name)
        form.retired = True
        for pvname in form.pvdb:
            self.pvdb.pop(pvname, None)
            self.gate.groups.pop(pvname, None)

    async def initialize(self) -> None:
        """Publish what needs the event loop: names, units, forms, device information."""
        await publish_units(self.pvdb)
        await self.gate_pvs.access_mode.write(self.gate.settings.mode())
        await self.data.initialise()
        await self.selection.publish_names(self.registry.plan_names, self.registry.device_names)
        for form in self.forms.values():
            await form.initialize()
        await epics_limits(self.pvdb)  # display and alarm limits as EPICS reports them
        await publish_field_types(self.pvdb)  # FTVL of the waveforms
        await self.setup.publish_setup(self.description, self.registry)
        await self.queue_pvs.initialize()  # the stored queue; Autostart if configured

    async def apply_setup(self, setup: ServedProfile) -> None:
        """Serve a reloaded profile: its worker in service, forms added, rebuilt or retired."""
        if setup.on_applied is not None:
            await setup.on_applied()  # the new worker in service, the old one retired
        old = self.registry
        self.context.registry = setup.registry
        self.description = setup.description
        added, removed = [], []
        for name in old.plan_names:
            if name not in setup.registry.plan_names:
                self._retire_form(name)
                removed.append(name)
            elif old.parameters(name) != setup.registry.parameters(name):
                self._retire_form(name)
        for name in setup.registry.plan_names:
            if name not in self.forms:
                self._add_form(name)  # its units are published by initialize() below
                if name not in old.plan_names:
                    added.append(name)
        for form in self.forms.values():
            await form.initialize()
        await epics_limits(self.pvdb)
        await publish_field_types(self.pvdb)
        try:  # the profile's plan policy (when no --policy file names one)
            self.gate.apply_profile(setup.access_policy)
        except ValueError as exc:
            await self.status.refuse(f"Reload: {exc}; the plan policy in service stays")
        if self.gate.acf_path is not None:  # Reload re-reads the access security file too
            try:
                await self.gate_pvs.reload_access()
            except Refused as exc:
                await self.status.refuse(f"Reload: {exc}")
        await self.selection.publish_names(setup.registry.plan_names, setup.registry.device_names)
        await self.setup.publish_setup(setup.description, setup.registry)
        changes = "".join(
            f"; {label}: {', '.join(names)}"
            for label, names in (("added", added), ("removed", removed))
            if names
        )
        await self.status.say(
            f"reloaded: {len(setup.registry.plan_names)} plans, "
            f"{len(setup.registry.device_names)} devices{changes}"
        )

    @classmethod
    def with_data_capacity(cls, capacity: int) -> type[RunEngineIOC]:
        """The IOC with its Data:X/Y arrays ``capacity`` points long."""
        group = SubGroup(data_group_class(capacity), prefix="")
        return type(cls.__name__, (cls,), {"__doc__": cls.__doc__, "data": group})

    # the bridge's Publisher: events are shown by the status and data groups
    async def publish_event(self, event: WorkerEvent) -> None:
        await self.status.publish_event(event)
        await self.data.publish_event(event)
        await self.queue_pvs.publish_event(event)

    async def publishing_failed(self, failure: BaseException, count: int) -> None:
        """The bridge's publishing died and is being restarted: say so, with a MAJOR alarm."""
        what = str(failure) or type(failure).__name__
        await self.status.alarm(
            f"publishing failed ({what}); restarted ({count} since start-up); "
            "values shown may have missed an update"
        )

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
    startup_note: str = "",
    client_timeout: float = DEFAULT_SEND_TIMEOUT,
    monitor_batch_time: float = 0.0,
) -> int:
    """Serve until SIGINT/SIGTERM, then end any plan cleanly and return the exit code.

    ``startup_note`` is added to the first Status line (e.g. an interrupted run found).
    The server is caproto's with EPICS base's monitor fan-out (:mod:`.fanout`): a client that
    reads nothing for ``client_timeout`` s is dropped, monitors to a busy client share one
    write per ``monitor_batch_time``.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    received: list[str] = []

    def on_signal(signame: str) -> None:
        received.append(signame)
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)

    await ioc.initialize()
    await ioc.status.say(
        f"ready: {len(ioc.registry.plan_names)} plans, {len(ioc.registry.device_names)} devices"
        + (f"; {startup_note}" if startup_note else "")
        + f"; {ioc.gate.settings.describe()}"
    )
    if ioc.gate.control.open:
        log.info("no --acf: access is open, any Channel Access client may write")
    publisher = asyncio.ensure_future(
        ioc.bridge.publish_forever(ioc, on_failure=ioc.publishing_failed)
    )
    server_context = FanoutContext(
        ioc.pvdb, interfaces, send_timeout=client_timeout, batch_time=monitor_batch_time
    )
    ioc.gate.server = server_context  # the gate sends new access rights on its circuits
    ioc.diag.server = server_context  # Diag:Clients counts its circuits
    # many watching clients slow the per-point PVs (Progress...), not the plan
    ioc.bridge.watchers = server_context.subscription_count
    # State changes go out at once, never held back by a batch of per-point updates
    server_context.urgent.update(ioc.status.urgent_channels() + ioc.control.urgent_channels())
    server = asyncio.ensure_future(server_context.run(log_pv_names=log_pv_names))
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
    await ioc.queue_pvs.shutting_down()  # no next item; the one running ends interrupted
    clean = await ioc.bridge.shutdown(
        f"IOC shutting down ({received[0] if received else 'server ended'})", shutdown_timeout
    )
    # the last events (state idle, plan finished) reach the clients before the server ends
    if not await ioc.bridge.drain(DRAIN_TIMEOUT):
        log.warning("some events were not published within %.1f s of the end", DRAIN_TIMEOUT)
    # and the puts they release (a pending `caput -c Start`) get their completions
    if not await server_context.settle(DRAIN_TIMEOUT):
        log.warning("some puts were not completed within %.1f s of the end", DRAIN_TIMEOUT)
    await ioc.queue_pvs.close()
    for task in (publisher, server, waiter):
        task.cancel()
    await asyncio.gather(publisher, server, waiter, return_exceptions=True)
    if not clean:
        log.error("the worker did not end within %.1f s", shutdown_timeout)
        exit_code = exit_code or 2
    return exit_code
