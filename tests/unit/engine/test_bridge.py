"""The bridge between the worker's threads and the IOC's event loop (no Channel Access).

pytest-asyncio is not used: every test runs its own loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest

from runengine_ioc.engine.bridge import Bridge
from runengine_ioc.engine.events import (
    ExitStatus,
    PlanAccepted,
    PlanFinished,
    Progress,
    Refused,
    RunClosed,
    RunOpened,
    StateChanged,
    StatusMessage,
)
from runengine_ioc.engine.registry import ArgumentError, Registry
from runengine_ioc.plans import DEFAULT_PLANS
from tests.polling import async_wait_until

from ..conftest import MakeWorker

TIMEOUT = 10.0


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    await async_wait_until(predicate, timeout)


class RecordingPublisher:
    """A Publisher that records every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def publish_event(self, event: Any) -> None:
        self.calls.append(("event", event))

    async def publish_progress(self, progress: Progress | None, now: float) -> None:
        self.calls.append(("progress", progress))

    @property
    def events(self) -> list[Any]:
        return [item for kind, item in self.calls if kind == "event"]

    def progress(self, calls: list[tuple[str, Any]] | None = None) -> list[Progress]:
        """The progress records actually published (ticks with nothing new left out)."""
        calls = self.calls if calls is None else calls
        return [item for kind, item in calls if kind == "progress" and item is not None]

    def index(self, kind: type) -> int:
        return next(i for i, (k, item) in enumerate(self.calls) if isinstance(item, kind))

    def saw(self, kind: type) -> bool:
        return any(isinstance(event, kind) for event in self.events)


@contextlib.asynccontextmanager
async def publishing(bridge: Bridge, publisher: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``bridge.publish_forever(publisher)`` for the duration of the block."""
    task = asyncio.ensure_future(bridge.publish_forever(publisher))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _finished(ticket: int, status: ExitStatus = ExitStatus.SUCCESS) -> PlanFinished:
    return PlanFinished(ticket, "count", status, "completed", (f"uid-{ticket}",))


# -- events up: progress coalesced, the rest in order --------------------------------------


@pytest.mark.parametrize("spread", [0.0, 0.5], ids=["burst", "spread-over-half-a-second"])
def test_progress_from_another_thread_is_coalesced_to_the_rate_and_the_last_point_is_published(
    spread,
):
    rate = 10.0
    total = 1000

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=rate)
        publisher = RecordingPublisher()
        async with publishing(bridge, publisher):
            t0 = time.time()

            def feed() -> None:
                for i in range(1, total + 1):
                    bridge.listener(Progress(i, total, t0, time.time()))
                    if spread:
                        time.sleep(spread / total)
                bridge.listener(RunClosed("uid-1", "success", "", total))
                bridge.listener(_finished(1))

            started = time.monotonic()
            thread = threading.Thread(target=feed)
            thread.start()
            await asyncio.to_thread(thread.join)
            await until(lambda: publisher.saw(PlanFinished))
            elapsed = time.monotonic() - started

        published = publisher.progress()
        # far fewer than one publication per point, and no more than the rate allows
        # (one per tick, plus the flush before the run's end)
        assert 1 <= len(published) <= elapsed * rate + 2
        assert len(published) < total / 10
        points = [p.current_point for p in published]
        assert points == sorted(set(points))
        # the final values go out before the run's end
        closed = publisher.index(RunClosed)
        assert publisher.progress(publisher.calls[:closed])[-1].current_point == total
        assert publisher.progress(publisher.calls[closed:]) == []
        assert publisher.events == [RunClosed("uid-1", "success", "", total), _finished(1)]

    run(main)


@pytest.mark.parametrize("end", [RunClosed("uid-1", "abort", "", 5), _finished(1)])
def test_pending_progress_is_flushed_just_before_a_run_closed_or_plan_finished(end):
    async def main() -> None:
        # a tick every 100 s: any progress published here is the flush
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=0.01)
        publisher = RecordingPublisher()
        async with publishing(bridge, publisher):
            bridge.listener(StatusMessage("before"))
            bridge.listener(Progress(4, 10, 1.0, 2.0))
            bridge.listener(Progress(5, 10, 1.0, 3.0))
            bridge.listener(end)
            await until(lambda: publisher.saw(type(end)))
        assert publisher.calls == [
            ("event", StatusMessage("before")),
            ("progress", Progress(5, 10, 1.0, 3.0)),
            ("event", end),
        ]

    run(main)


def test_ordered_events_arrive_in_the_order_sent_with_none_dropped():
    sent: list[Any] = []
    states = itertools.cycle(["running", "pausing", "paused", "running", "idle", "idle"])
    previous = "idle"
    for i in range(400):
        if i % 4 == 0:
            state = next(states)
            sent.append(StateChanged(state, previous))
            previous = state
        elif i % 4 == 1:
            sent.append(PlanAccepted(i, "count"))
        elif i % 4 == 2:
            sent.append(RunOpened(f"uid-{i}", i, "count", 3, float(i)))
        else:
            sent.append(StatusMessage(f"line {i}"))
    sent += [RunClosed("uid-x", "success", "", 3), _finished(10_000)]

    class SlowPublisher(RecordingPublisher):
        async def publish_event(self, event: Any) -> None:
            await asyncio.sleep(0)  # let the progress ticker in between events
            await super().publish_event(event)

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=1000)
        publisher = SlowPublisher()
        async with publishing(bridge, publisher):

            def feed() -> None:
                for n, event in enumerate(sent):
                    bridge.listener(event)
                    bridge.listener(Progress(n + 1, None, 0.0, 0.0))

            thread = threading.Thread(target=feed)
            thread.start()
            await asyncio.to_thread(thread.join)
            await until(lambda: len(publisher.events) == len(sent))
        assert publisher.events == sent

    run(main)


def test_the_publisher_is_ticked_at_the_rate_when_nothing_is_new():
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=200)
        publisher = RecordingPublisher()
        async with publishing(bridge, publisher):
            await until(lambda: len(publisher.calls) >= 3)
        assert all(call == ("progress", None) for call in publisher.calls)

    run(main)


def test_a_publisher_failing_on_an_event_does_not_stop_the_publishing():
    class FailingPublisher(RecordingPublisher):
        async def publish_event(self, event: Any) -> None:
            if event == StatusMessage("boom"):
                raise RuntimeError("PV write failed")
            await super().publish_event(event)

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=0.01)
        bridge.attach(FakeWorker())  # type: ignore[arg-type]
        publisher = FailingPublisher()
        future = await bridge.submit("count", {}, {})
        async with publishing(bridge, publisher) as task:
            for event in (StatusMessage("boom"), StatusMessage("after"), _finished(1)):
                bridge.listener(event)
            result = await asyncio.wait_for(future, TIMEOUT)
            assert not task.done()
        assert result == _finished(1)
        assert publisher.events == [StatusMessage("after"), _finished(1)]

    run(main)


def test_a_publisher_failing_on_the_final_progress_does_not_stop_the_publishing():
    class FailingPublisher(RecordingPublisher):
        async def publish_progress(self, progress: Progress | None, now: float) -> None:
            if progress is not None:
                raise RuntimeError("PV write failed")
            await super().publish_progress(progress, now)

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=0.01)
        publisher = FailingPublisher()
        async with publishing(bridge, publisher) as task:
            bridge.listener(Progress(3, 3, 1.0, 2.0))
            bridge.listener(RunClosed("uid-1", "success", "", 3))
            bridge.listener(StatusMessage("after"))
            await until(lambda: publisher.saw(StatusMessage) or task.done())
            assert not task.done()
        assert publisher.events == [RunClosed("uid-1", "success", "", 3), StatusMessage("after")]

    run(main)


def test_progress_is_never_published_before_the_run_opened_that_preceded_it():
    gate = asyncio.Event()
    entered = asyncio.Event()

    class GatedPublisher(RecordingPublisher):
        async def publish_event(self, event: Any) -> None:
            if isinstance(event, PlanAccepted):
                entered.set()
                await gate.wait()  # a slow PV write
            await super().publish_event(event)

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=1000)
        publisher = GatedPublisher()
        async with publishing(bridge, publisher):
            # what the worker sends for a one-point count, in this order
            bridge.listener(PlanAccepted(1, "count"))
            await asyncio.wait_for(entered.wait(), TIMEOUT)
            bridge.listener(RunOpened("uid-1", 1, "count", 1, 1.0))
            bridge.listener(Progress(1, 1, 1.0, 2.0))
            bridge.listener(RunClosed("uid-1", "success", "", 1))
            # not synchronisation: give the 1 ms ticker time to queue up behind the lock
            await asyncio.sleep(0.05)
            gate.set()
            await until(lambda: publisher.saw(RunClosed))
        opened, closed = publisher.index(RunOpened), publisher.index(RunClosed)
        assert publisher.progress(publisher.calls[:opened]) == []
        assert publisher.progress(publisher.calls[opened:closed]) == [Progress(1, 1, 1.0, 2.0)]

    run(main)


# -- commands down -------------------------------------------------------------------------


class FakeWorker:
    """What the bridge needs of a worker: submit, the commands, busy and state."""

    def __init__(self) -> None:
        self._tickets = itertools.count(1)
        self.refusal: Exception | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.threads: list[threading.Thread] = []
        self.busy = False
        self.state = "idle"

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self.threads.append(threading.current_thread())

    def submit(self, plan_name: str, arguments: Any, metadata: Any) -> int:
        if self.refusal is not None:
            raise self.refusal
        self._record("submit", plan_name, arguments, metadata)
        return next(self._tickets)

    def request_pause(self, defer: bool = False) -> None:
        self._record("pause", defer)

    def resume(self) -> None:
        self._record("resume")

    def stop(self) -> None:
        self._record("stop")

    def abort(self, reason: str = "") -> None:
        self._record("abort", reason)

    def halt(self) -> None:
        self._record("halt")

    def shutdown(self, reason: str, timeout: float) -> bool:
        self._record("shutdown", reason, timeout)
        return True


def test_submit_returns_a_future_resolved_by_the_plan_finished_of_its_ticket():
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=100)
        worker = FakeWorker()
        bridge.attach(worker)  # type: ignore[arg-type]
        publisher = RecordingPublisher()
        async with publishing(bridge, publisher):
            assert await bridge.wait_current_plan() is None
            future = await bridge.submit("count", {"detectors": ["det"]}, {"sample": "Si"})
            assert worker.calls == [("submit", "count", {"detectors": ["det"]}, {"sample": "Si"})]
            current = asyncio.ensure_future(bridge.wait_current_plan())

            bridge.listener(_finished(7))  # somebody else's ticket
            await until(lambda: publisher.saw(PlanFinished))
            assert not future.done()
            assert not current.done()

            bridge.listener(_finished(1, ExitStatus.ABORT))
            result = await asyncio.wait_for(future, TIMEOUT)
            assert result == _finished(1, ExitStatus.ABORT)
            assert await asyncio.wait_for(current, TIMEOUT) == result
            assert await bridge.wait_current_plan() is None

            second = await bridge.submit("count", {}, {})
            bridge.listener(_finished(2))
            assert (await asyncio.wait_for(second, TIMEOUT)).ticket == 2

    run(main)


@pytest.mark.parametrize("refusal", [ArgumentError("count: bad"), Refused("busy")])
def test_submit_raises_the_workers_refusal_at_once_and_waits_for_nothing(refusal):
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop())
        worker = FakeWorker()
        worker.refusal = refusal
        bridge.attach(worker)  # type: ignore[arg-type]
        with pytest.raises(type(refusal), match=str(refusal)):
            await bridge.submit("count", {}, {})
        assert await bridge.wait_current_plan() is None

    run(main)


def test_commands_are_passed_to_the_worker_and_blocking_ones_run_off_the_loop():
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop())
        worker = FakeWorker()
        bridge.attach(worker)  # type: ignore[arg-type]
        worker.busy, worker.state = True, "paused"
        assert (bridge.busy, bridge.state) == (True, "paused")
        await bridge.pause(defer=True)
        await bridge.resume()
        await bridge.stop()
        await bridge.abort("beam lost")
        await bridge.halt()
        assert await bridge.shutdown("bye", 3.0) is True
        assert worker.calls == [
            ("pause", True),
            ("resume",),
            ("stop",),
            ("abort", "beam lost"),
            ("halt",),
            ("shutdown", "bye", 3.0),
        ]
        loop_thread = threading.current_thread()
        blocking = [
            t for call, t in zip(worker.calls, worker.threads, strict=True) if call[0] != "resume"
        ]
        assert all(t is not loop_thread for t in blocking)

    run(main)


def test_without_a_worker_commands_fail_clearly():
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="no worker attached"):
            await bridge.submit("count", {}, {})
        with pytest.raises(RuntimeError, match="no worker attached"):
            await bridge.abort()
        with pytest.raises(RuntimeError, match="no worker attached"):
            _ = bridge.state

    run(main)


# -- with a real worker --------------------------------------------------------------------


@pytest.fixture
def registry(devices: SimpleNamespace) -> Registry:
    return Registry([devices.det, devices.motor], DEFAULT_PLANS)


def test_a_plan_submitted_through_the_bridge_resolves_its_future_when_it_ends(
    make_worker: MakeWorker, registry: Registry
):
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=50)
        bridge.attach(make_worker(registry, bridge.listener))
        publisher = RecordingPublisher()
        try:
            async with publishing(bridge, publisher):
                future = await bridge.submit("count", {"detectors": ["det"], "num": 3}, {})
                assert bridge.busy
                result = await asyncio.wait_for(future, TIMEOUT)
        finally:
            assert await bridge.shutdown("test over", 5.0) is True
        assert result.exit_status is ExitStatus.SUCCESS
        assert result.ticket == 1
        (opened,) = [e for e in publisher.events if isinstance(e, RunOpened)]
        assert result.run_uids == (opened.uid,)
        kinds = [type(e) for e in publisher.events]
        assert kinds == [
            PlanAccepted,
            StatusMessage,
            StateChanged,
            RunOpened,
            RunClosed,
            StateChanged,
            PlanFinished,
        ]
        closed = publisher.index(RunClosed)
        assert publisher.progress(publisher.calls[:closed])[-1].current_point == 3
        assert not bridge.busy

    run(main)


def test_pause_resume_and_abort_through_the_bridge_reach_the_worker(
    make_worker: MakeWorker, registry: Registry
):
    def published_state(publisher: RecordingPublisher) -> str | None:
        changes = [e for e in publisher.events if isinstance(e, StateChanged)]
        return changes[-1].state if changes else None

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=50)
        bridge.attach(make_worker(registry, bridge.listener))
        publisher = RecordingPublisher()
        try:
            async with publishing(bridge, publisher):
                arguments = {"detectors": ["det"], "num": 100, "delay": 0.02}
                future = await bridge.submit("count", arguments, {})
                await until(lambda: bool(publisher.progress()))
                await bridge.pause()
                await until(lambda: published_state(publisher) == "paused")
                assert (bridge.state, bridge.busy) == ("paused", True)
                await bridge.resume()
                await until(lambda: published_state(publisher) == "running")
                await bridge.abort("enough")
                result = await asyncio.wait_for(future, TIMEOUT)
        finally:
            assert await bridge.shutdown("test over", 5.0) is True
        assert result.exit_status is ExitStatus.ABORT
        assert result.message == "aborted on request: enough"
        (closed,) = [e for e in publisher.events if isinstance(e, RunClosed)]
        assert closed.exit_status == "abort"
        assert closed.num_events < 100

    run(main)


@pytest.mark.parametrize(
    ("watchers", "period"),
    [(None, 0.1), (0, 0.1), (50, 0.1), (100, 0.1), (300, 0.3), (800, 0.8), (5000, 1.0)],
)
def test_per_point_values_slow_down_as_clients_watch_never_below_once_a_second(
    watchers: int | None, period: float
) -> None:
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=10.0, update_budget=1000.0)
        if watchers is not None:
            bridge.watchers = lambda: watchers
        assert bridge.tick_period() == pytest.approx(period)
        unbudgeted = Bridge(asyncio.get_running_loop(), max_rate_hz=10.0)
        unbudgeted.watchers = lambda: 5000
        assert unbudgeted.tick_period() == pytest.approx(0.1)  # no budget: the rate holds
        slow = Bridge(asyncio.get_running_loop(), max_rate_hz=0.5, update_budget=1000.0)
        slow.watchers = lambda: 5000
        assert slow.tick_period() == pytest.approx(2.0)  # never faster than --max-rate says

    run(main)
