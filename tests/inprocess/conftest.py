"""The IOC's PV groups served in the test's own event loop, driven by a caproto client.

No subprocess and no EPICS base tool: for behaviour of the CA side that a caproto client can
see (values, alarms, put completion), against a scripted worker behind the ``Worker`` Protocol,
so that a test decides exactly what the RunEngine side reports and when. What needs a real
client (caput's exit code, libca's behaviour) stays in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from caproto.asyncio.client import Context
from ophyd.sim import hw

from runengine_ioc.ca.fanout import FanoutContext
from runengine_ioc.ca.server import RunEngineIOC
from runengine_ioc.engine.bridge import Bridge
from runengine_ioc.engine.catalog import RegistryView
from runengine_ioc.engine.events import (
    ExitStatus,
    Listener,
    PlanAccepted,
    PlanFinished,
    StateChanged,
)
from runengine_ioc.engine.registry import Registry
from runengine_ioc.plans import DEFAULT_PLANS
from runengine_ioc.queue.plan_queue import PlanQueue
from tests.leaks import fail_on_threads_or_tasks_left_behind  # noqa: F401 (autouse)
from tests.ports import free_port


class ScriptedWorker:
    """A Worker that runs nothing: the test says when a plan changes state and ends."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._tickets = itertools.count(1)
        self.ticket: int | None = None
        self.plan_name = ""
        self._state = "idle"

    @property
    def state(self) -> str:
        return self._state

    @property
    def busy(self) -> bool:
        return self.ticket is not None

    def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> int:
        # busy only once its events are sent: a test that sees it busy and finishes the plan
        # from the loop's thread (while this runs in the bridge's worker thread) would
        # otherwise race this method, which read the ticket back after finish() had cleared it
        # and returned None: the bridge then waited on ticket None for good (seen once in CI)
        ticket = next(self._tickets)
        self.plan_name = plan_name
        self._listener(PlanAccepted(ticket, plan_name))
        self.move_to("running")
        self.ticket = ticket
        return ticket

    def move_to(self, state: str) -> None:
        previous, self._state = self._state, state
        self._listener(StateChanged(state, previous))

    def finish(self, status: ExitStatus = ExitStatus.SUCCESS) -> None:
        assert self.ticket is not None
        ticket, self.ticket = self.ticket, None
        self.move_to("idle")
        self._listener(PlanFinished(ticket, self.plan_name, status, "done"))

    def request_pause(self, defer: bool = False) -> None:
        self.move_to("paused")

    def resume(self) -> None:
        self.move_to("running")

    def stop(self) -> None:
        self.finish(ExitStatus.SUCCESS)

    def abort(self, reason: str = "") -> None:
        self.finish(ExitStatus.ABORT)

    def halt(self) -> None:
        self.finish(ExitStatus.ABORT)

    def shutdown(self, reason: str = "", timeout: float = 10.0) -> bool:
        return True


@dataclass
class ServedIOC:
    """An IOC served in the test's loop, its scripted worker, and a connected client."""

    ioc: RunEngineIOC
    worker: ScriptedWorker
    client: Context
    prefix: str

    async def pv(self, suffix: str) -> Any:
        (channel,) = await self.client.get_pvs(self.prefix + suffix)
        await channel.wait_for_connection(timeout=10)
        return channel

    async def read(self, suffix: str) -> Any:
        channel = await self.pv(suffix)
        return await channel.read(data_type="control", timeout=10)

    async def text(self, suffix: str) -> str:
        reading = await self.read(suffix)
        return bytes(reading.data).rstrip(b"\0").decode()


@pytest.fixture
def loopback_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback Channel Access on a port of this test's own (server and client alike)."""
    port = free_port()
    for name, value in {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_BEACON_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)


@contextlib.asynccontextmanager
async def served_ioc() -> AsyncIterator[ServedIOC]:
    """Serve the IOC in the running loop (use within ``asyncio.run``, after ``loopback_ca``)."""
    loop = asyncio.get_running_loop()
    bridge = Bridge(loop, max_rate_hz=50)
    worker = ScriptedWorker(bridge.listener)
    bridge.attach(worker)
    devices = hw()
    registry = RegistryView.local(Registry([devices.det, devices.motor], DEFAULT_PLANS))
    prefix = f"P{uuid.uuid4().hex[:8]}:"
    queue = PlanQueue.in_memory()
    ioc = RunEngineIOC(prefix=prefix, registry=registry, bridge=bridge, queue=queue)
    await ioc.initialize()
    publisher = asyncio.ensure_future(bridge.publish_forever(ioc, ioc.publishing_failed))
    # the server serve() runs: caproto's with our fan-out (ca/fanout.py)
    server = asyncio.ensure_future(FanoutContext(ioc.pvdb, ["127.0.0.1"]).run())
    client = Context()
    try:
        yield ServedIOC(ioc, worker, client, prefix)
    finally:
        await client.disconnect()
        for task in (publisher, server):
            task.cancel()
        await asyncio.gather(publisher, server, return_exceptions=True)
        await ioc.queue_pvs.close()
        queue.close()  # its store's thread, as cli closes the queue it made


def run(main: Callable[[], Coroutine[Any, Any, None]], timeout: float = 60.0) -> None:
    """Run a test's coroutine on a fresh loop (tasks it leaves pending fail the test)."""
    asyncio.run(asyncio.wait_for(main(), timeout))
