"""The loop side is supervised: publishing that dies is reported and restarted, and a plan's
end always releases the Start put that waits for it."""

from __future__ import annotations

import asyncio

import pytest
from caproto import AlarmSeverity

from runengine_ioc.engine.events import PlanFinished, StateChanged, WorkerEvent
from tests.polling import async_wait_until

from .conftest import ServedIOC, run, served_ioc

pytestmark = pytest.mark.usefixtures("loopback_ca")


def test_publishing_that_dies_is_reported_with_a_major_alarm_and_restarted() -> None:
    run(_publishing_dies)


async def _publishing_dies() -> None:
    async with served_ioc() as served:
        await _dies_once_and_restarts(served)


async def _dies_once_and_restarts(served: ServedIOC) -> None:
    original = served.ioc.status.publish_event
    failed: list[WorkerEvent] = []

    async def dies_once(event: WorkerEvent) -> None:
        if not failed and isinstance(event, StateChanged):
            failed.append(event)
            # what a cancellation from inside caproto looks like to the publishing task: it
            # goes past every per-event guard, and used to end publishing for good
            raise asyncio.CancelledError()
        await original(event)

    served.ioc.status.publish_event = dies_once  # type: ignore[method-assign]
    served.worker.submit("count", {"detectors": ["det"]}, {})  # PlanAccepted, then running

    async def status_alarm() -> bool:
        reading = await served.read("Status")
        return reading.metadata.severity == AlarmSeverity.MAJOR_ALARM

    await _eventually(status_alarm)
    assert "publishing failed" in await served.text("Status")
    # publishing goes on: the next state change reaches State, and the alarm clears with the
    # next ordinary Status line
    served.worker.move_to("paused")
    await _eventually(lambda: _state_is(served, "paused"))
    served.worker.finish()
    await _eventually(lambda: _state_is(served, "idle"))
    reading = await served.read("Status")
    assert reading.metadata.severity == AlarmSeverity.NO_ALARM


def test_a_start_put_completes_even_when_publishing_its_end_fails() -> None:
    run(_start_put_completes)


async def _start_put_completes() -> None:
    async with served_ioc() as served:
        await _completes_despite_failure(served)


async def _completes_despite_failure(served: ServedIOC) -> None:
    original = served.ioc.status.publish_event

    async def fails_on_the_end(event: WorkerEvent) -> None:
        if isinstance(event, PlanFinished):
            raise asyncio.CancelledError()  # past the per-event guard, as above
        await original(event)

    served.ioc.status.publish_event = fails_on_the_end  # type: ignore[method-assign]
    await (await served.pv("PlanName")).write(b"count", wait=True, timeout=10)
    await (await served.pv("PlanArgs")).write(b'{"detectors": ["det"]}', wait=True, timeout=10)
    start = await served.pv("Start")
    put = asyncio.ensure_future(start.write([1], wait=True, timeout=10))
    await async_wait_until(lambda: served.worker.busy, 10, what="the plan accepted")
    served.worker.finish()
    await asyncio.wait_for(put, 10)  # completed, not left waiting for good
    assert "publishing failed" in await served.text("Status")


async def _state_is(served: ServedIOC, state: str) -> bool:
    reading = await served.read("State")
    return bool(reading.data[0] == served.ioc.status.state.enum_strings.index(state))


async def _eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s: {check}"
        await asyncio.sleep(0.01)
