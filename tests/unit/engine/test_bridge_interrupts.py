"""A Stop/Abort/Halt put waits for the plan it interrupted, never for a later one.

The interrupted plan's end can be published, and another client's Start accepted, before the
putter asks which plan to wait for: the bridge binds the ticket when the interrupt acts.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from runengine_ioc.engine.bridge import Bridge
from runengine_ioc.engine.events import ExitStatus, PlanFinished

from .test_bridge import RecordingPublisher, publishing, run, until

TIMEOUT = 10.0


class InterruptedWorker:
    """A worker whose interrupt ends plan 1, then returns only once plan 2 was submitted."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.tickets = iter(range(1, 100))
        self.second_submitted = threading.Event()
        self.busy = False
        self.state = "running"

    def submit(self, plan_name: str, arguments: Any, metadata: Any) -> int:
        return next(self.tickets)

    def _interrupt(self, *args: Any) -> int:
        self.bridge.listener(PlanFinished(1, "count", ExitStatus.ABORT, "halted", ()))
        assert self.second_submitted.wait(TIMEOUT)
        return 1

    stop = abort = halt = _interrupt


@pytest.mark.parametrize("command", ["stop", "abort", "halt"])
def test_the_interrupts_put_waits_for_the_plan_it_interrupted_not_the_next(command):
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=100)
        worker = InterruptedWorker(bridge)
        bridge.attach(worker)  # type: ignore[arg-type]
        publisher = RecordingPublisher()
        async with publishing(bridge, publisher):
            first = await bridge.submit("count", {}, {})

            async def putter() -> PlanFinished | None:  # what the Stop/Abort/Halt putters do
                await getattr(bridge, command)()
                return await bridge.wait_current_plan()

            put = asyncio.ensure_future(putter())
            await until(first.done)  # plan 1's end is published ...
            second = await bridge.submit("count", {}, {})  # ... and another client's Start lands
            worker.second_submitted.set()
            assert await asyncio.wait_for(put, TIMEOUT / 2) is None  # plan 1 had ended
            assert not second.done()
            # without an interrupt before it, the wait is for the plan in progress
            current = asyncio.ensure_future(bridge.wait_current_plan())
            await asyncio.sleep(0.05)
            assert not current.done()
            bridge.listener(PlanFinished(2, "count", ExitStatus.SUCCESS, "completed", ()))
            assert (await asyncio.wait_for(current, TIMEOUT)).ticket == 2  # type: ignore[union-attr]

    run(main)
