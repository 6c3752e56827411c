"""The one place where the worker's threads and the IOC's event loop meet.

Commands go down: putters await the bridge's coroutines, which hand blocking work to a thread
so the event loop never waits on the RunEngine. Events come up: the worker calls
:meth:`Bridge.listener` from its threads; ordered events (state changes, runs opening and
closing, plans finishing, status lines) are queued onto the loop at once and in order, while
per-point records (:class:`~.events.Coalesced`: progress, live data, sink health)
are coalesced, one slot per type, and published at a bounded rate, the final values always
before the run's end is published. Nothing here imports caproto.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from .commands import Publisher, Worker
from .events import (
    Coalesced,
    PlanFinished,
    Progress,
    Refused,
    RunClosed,
    WorkerEvent,
)

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Coalesced)

#: A check run before a plan is accepted; raises ``Refused`` with the reason to refuse it.
Preflight = Callable[[], None]
#: Told of a publishing failure and how many there were so far (the IOC says so in Status).
FailureReport = Callable[[BaseException, int], Awaitable[None]]
#: Pause before publishing starts again after a failure; doubles per failure, up to the max.
RESTART_PAUSE = 0.05
RESTART_PAUSE_MAX = 5.0
#: Seconds between two publications of per-point values, at the most (see watchers).
SLOWEST_PERIOD = 1.0
#: Plans ended before their submit() returned, remembered for it (a few suffice).
FINISHED_EARLY_KEPT = 16


class Bridge:
    """Carries commands to the worker and events from it.

    Parameters
    ----------
    loop
        The IOC's event loop; events are delivered on it.
    max_rate_hz
        Upper bound on how often per-point values are published.
    update_budget
        Monitor updates per second the per-point values may cost the IOC: with
        :attr:`watchers` (the clients' subscriptions, counted by the server) the period grows
        to ``watchers / update_budget`` s, up to :data:`SLOWEST_PERIOD`, so that many
        watching clients slow the progress PVs rather than the plan. 0: always ``max_rate_hz``.
    preflight
        Checks run by :meth:`submit` before a plan goes to the worker (e.g. the data
        directory has room); each raises ``Refused`` to refuse the plan. More may be
        appended to :attr:`preflight` later.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_rate_hz: float = 10.0,
        update_budget: float = 0.0,
        preflight: Iterable[Preflight] = (),
    ) -> None:
        self._loop = loop
        self.preflight: list[Preflight] = list(preflight)
        self._period = 1.0 / max_rate_hz
        self._update_budget = update_budget
        #: how many monitor subscriptions clients hold now (set by the CA server)
        self.watchers: Callable[[], int] | None = None
        self._events: asyncio.Queue[WorkerEvent] = asyncio.Queue()
        self._latest_lock = threading.Lock()
        # the latest record of each Coalesced type, stamped with the number of ordered
        # events sent before it (the RunOpened it belongs to among them)
        self._latest: dict[type[Coalesced], tuple[Coalesced, int]] = {}
        self._enqueued = 0  # ordered events sent by the worker
        self._published = 0  # ordered events published (only touched on the loop)
        self._waiters: dict[int, asyncio.Future[PlanFinished]] = {}
        self._finished_early: dict[int, PlanFinished] = {}
        self._current_ticket: int | None = None
        self._follow_ons: list[int] = []  # tickets handed over to follow, not started, in order
        self._publish_lock = asyncio.Lock()
        self._drained = asyncio.Event()  # set each time an ordered event has been published
        # The ticket the caller's last Stop/Abort/Halt acted on, bound at that moment in the
        # caller's own context (its task): wait_current_plan() waits for that plan, not for
        # one a Start submitted in between. A context variable, so that it passes unchanged
        # through wrappers of the bridge's commands (the access gate).
        self._interrupted: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            "interrupted_ticket", default=None
        )
        self.worker: Worker | None = None

    def attach(self, worker: Worker) -> None:
        self.worker = worker

    def _require_worker(self) -> Worker:
        if self.worker is None:
            raise RuntimeError("no worker attached to the bridge")
        return self.worker

    # ------------------------------------------------------------ events up
    def listener(self, event: WorkerEvent | Coalesced) -> None:
        """Called from any thread by the worker; never blocks."""
        with self._latest_lock:
            if isinstance(event, Coalesced):
                self._latest[type(event)] = (event, self._enqueued)
                return
            self._enqueued += 1
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    def _take(self, kind: type[C]) -> C | None:
        """The latest record of a kind, once every ordered event sent before it is published."""
        with self._latest_lock:
            stored = self._latest.get(kind)
            if stored is None or stored[1] > self._published:
                return None
            del self._latest[kind]
        item = stored[0]
        return item if isinstance(item, kind) else None

    async def _publish_latest(self, publisher: Publisher) -> None:
        try:
            await publisher.publish_progress(self._take(Progress), time.time())
        except Exception:
            log.exception("publishing progress failed")
        with self._latest_lock:
            kinds = [kind for kind in self._latest if kind is not Progress]
        for kind in kinds:
            item = self._take(kind)
            if item is None:
                continue
            try:
                await publisher.publish_latest(item)
            except Exception:
                log.exception("publishing %s failed", kind.__name__)

    async def publish_forever(
        self, publisher: Publisher, on_failure: FailureReport | None = None
    ) -> None:
        """Publish events and per-point values until cancelled, restarting if publishing dies.

        Each event's own publishing errors are logged and skipped; this guards against the rest
        (a publishing task that is cancelled from within or raises past those guards). Without
        it State would freeze and every Start put would wait for good. ``on_failure`` is told
        of each failure and how many there were; publishing starts again after a short,
        growing pause, with the events still queued.
        """
        failures = 0
        while True:
            inner = asyncio.ensure_future(self._publish_until_failure(publisher))
            try:
                await asyncio.wait({inner})
            except asyncio.CancelledError:
                inner.cancel()
                await asyncio.gather(inner, return_exceptions=True)
                raise
            if inner.cancelled():
                failure: BaseException = RuntimeError("publishing was cancelled from within")
            else:
                failure = inner.exception() or RuntimeError("publishing ended")
            failures += 1
            log.error("publishing failed (%d so far): %r; restarting it", failures, failure)
            if on_failure is not None:
                try:
                    await on_failure(failure, failures)
                except Exception:
                    log.exception("reporting the publishing failure failed")
            await asyncio.sleep(min(RESTART_PAUSE_MAX, RESTART_PAUSE * 2 ** min(failures, 10)))

    async def _publish_until_failure(self, publisher: Publisher) -> None:
        """The event drain and the per-point ticker; returns (or raises) when either ends."""
        tasks = {
            asyncio.ensure_future(self._drain_forever(publisher)),
            asyncio.ensure_future(self._tick_forever(publisher)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.cancelled():
                raise asyncio.CancelledError()
            exc = task.exception()
            if exc is not None:
                raise exc

    async def _drain_forever(self, publisher: Publisher) -> None:
        while True:
            event = await self._events.get()
            try:
                async with self._publish_lock:
                    if isinstance(event, RunClosed | PlanFinished):
                        # the final per-point values go out before the end of the run
                        await self._publish_latest(publisher)
                    try:
                        await publisher.publish_event(event)
                    except Exception:
                        log.exception("publishing %r failed", event)
                # let the clients' senders take what this event changed before the next one
                await asyncio.sleep(0)
            finally:
                # even when publishing died on it: the event is dealt with, and the put
                # waiting for a plan's end is released
                self._published += 1
                if isinstance(event, PlanFinished):
                    self._finish(event)
                self._drained.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until every event the worker has sent so far is published (at most
        ``timeout`` s); True if they all went out. A plan's end flushes its per-point values."""
        target = self._enqueued
        deadline = self._loop.time() + timeout
        while self._published < target:
            self._drained.clear()
            left = deadline - self._loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._drained.wait(), left)
            except asyncio.TimeoutError:
                return self._published >= target
        return True

    def tick_period(self) -> float:
        """Seconds until per-point values are published again: ``1 / max_rate_hz``, longer
        while many clients watch (``update_budget``), never beyond :data:`SLOWEST_PERIOD`."""
        if self.watchers is None or self._update_budget <= 0:
            return self._period
        wanted = self.watchers() / self._update_budget
        return min(max(self._period, wanted), max(self._period, SLOWEST_PERIOD))

    async def _tick_forever(self, publisher: Publisher) -> None:
        while True:
            await asyncio.sleep(self.tick_period())
            async with self._publish_lock:
                await self._publish_latest(publisher)

    def _finish(self, event: PlanFinished) -> None:
        if self._current_ticket == event.ticket:
            self._current_ticket = event.followed_by  # a plan handed over started at its end
        if event.followed_by is None:  # the plans handed over after it never start
            self._drop_follow_ons(list(self._follow_ons))
        elif event.followed_by in self._follow_ons:
            self._follow_ons.remove(event.followed_by)
        waiter = self._waiters.pop(event.ticket, None)
        if waiter is None:  # its submit() has not had the ticket back yet
            self._finished_early[event.ticket] = event
            while len(self._finished_early) > FINISHED_EARLY_KEPT:
                del self._finished_early[next(iter(self._finished_early))]
        elif not waiter.done():
            waiter.set_result(event)

    # --------------------------------------------------------- commands down
    async def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished]:
        """Validate and start a plan; the returned future resolves when it has ended.

        Raises ``ArgumentError`` or ``Refused`` (nothing started) on bad input, or
        ``Refused`` when a pre-flight check says no (every path to a plan passes here: Start,
        the forms' Starts, Submit, the queue). The worker is asked off the event loop.
        """
        worker = self._require_worker()
        for check in self.preflight:
            check()
        ticket = await asyncio.to_thread(worker.submit, plan_name, arguments, metadata)
        waiter: asyncio.Future[PlanFinished] = self._loop.create_future()
        finished = self._finished_early.pop(ticket, None)
        if finished is not None:  # published while the worker's answer was on its way
            waiter.set_result(finished)
            return waiter
        self._waiters[ticket] = waiter
        self._current_ticket = ticket
        return waiter

    async def submit_next(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished] | None:
        """Hand the worker a plan to start the moment the current one (or the last one handed
        over) ends in success.

        The queue hands its next items over this way: the worker starts each on its own
        thread, so no round trip through the IOC lies between two runs. The future resolves
        when it has ended, and is cancelled if it never starts. None if no plan is in progress.
        """
        worker = self._require_worker()
        after = self._follow_ons[-1] if self._follow_ons else self._current_ticket
        if after is None:
            return None
        for check in self.preflight:
            check()
        ticket = await asyncio.to_thread(worker.submit_after, after, plan_name, arguments, metadata)
        if ticket is None:
            return None
        waiter: asyncio.Future[PlanFinished] = self._loop.create_future()
        finished = self._finished_early.pop(ticket, None)
        if finished is not None:  # it started, and ended, while the answer was on its way
            waiter.set_result(finished)
            return waiter
        if ticket != self._current_ticket:
            if after != self._current_ticket and after not in self._follow_ons:
                return None  # the plan it followed ended meanwhile and dropped it
            self._follow_ons.append(ticket)
        self._waiters[ticket] = waiter
        return waiter

    async def cancel_next(self) -> None:
        """Withdraw every plan handed over by :meth:`submit_next` that has not started (their
        futures are cancelled); those that have started run on."""
        if not self._follow_ons:
            return
        worker = self._require_worker()
        try:
            withdrawn = await asyncio.to_thread(worker.cancel_follow_ons)
        except Refused:  # the worker is gone: the plan's end (interrupted) drops them
            return
        self._drop_follow_ons(withdrawn)

    def _drop_follow_ons(self, tickets: Iterable[int]) -> None:
        for ticket in tickets:
            if ticket in self._follow_ons:
                self._follow_ons.remove(ticket)
            waiter = self._waiters.pop(ticket, None)
            if waiter is not None:
                waiter.cancel()

    async def wait_current_plan(self) -> PlanFinished | None:
        """Wait until the plan the caller last interrupted (else the one in progress) has ended.

        After :meth:`stop`, :meth:`abort` or :meth:`halt` in the same task, this waits for the
        plan that interrupt acted on, bound when it acted: a Start that lands in between is
        never waited for. None at once if that plan has already ended (or there is none).
        """
        ticket = self._interrupted.get()
        if ticket is not None:
            self._interrupted.set(None)
        else:
            ticket = self._current_ticket
        waiter = self._waiters.get(ticket) if ticket is not None else None
        if waiter is None:
            return None
        return await asyncio.shield(waiter)

    async def pause(self, defer: bool = False) -> None:
        await asyncio.to_thread(self._require_worker().request_pause, defer)

    async def resume(self) -> None:
        await asyncio.to_thread(self._require_worker().resume)

    async def stop(self) -> None:
        self._interrupted.set(await asyncio.to_thread(self._require_worker().stop))

    async def abort(self, reason: str = "") -> None:
        self._interrupted.set(await asyncio.to_thread(self._require_worker().abort, reason))

    async def halt(self) -> None:
        """Halt the plan: bounded by the worker's halt timeout, whatever the RunEngine does."""
        self._interrupted.set(await asyncio.to_thread(self._require_worker().halt))

    async def shutdown(self, reason: str, timeout: float) -> bool:
        """Abort any plan cleanly, wait for its documents, end the worker."""
        worker = self._require_worker()
        return await asyncio.to_thread(worker.shutdown, reason, timeout)

    @property
    def state(self) -> str:
        return self._require_worker().state

    @property
    def busy(self) -> bool:
        return self._require_worker().busy
