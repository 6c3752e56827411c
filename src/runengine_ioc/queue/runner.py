"""Running the queue: items one after the other, through the engine's Commands.

The runner submits each item with :meth:`Commands.submit
<runengine_ioc.engine.commands.Commands.submit>` (the bridge, as Start and Submit do) and learns
its outcome from the :class:`~runengine_ioc.engine.events.PlanFinished` the returned future
resolves with. The events the IOC publishes (:meth:`QueueRunner.observe`) tell it the runs an
item opened (scan ids, run uids, noted on disk as they open), whether the RunEngine was
stopped (bluesky calls that a success) and when the RunEngine is paused.

An item is marked running on disk *before* it is submitted, and the next one is started in
the same transaction that ends the previous one: a kill at any moment can leave an item
``interrupted``, never run twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from enum import Enum

from ..engine.commands import Commands
from ..engine.events import PlanFinished, Refused, RunOpened, StateChanged, WorkerEvent
from .items import ItemState, Record, outcome
from .plan_queue import PlanQueue

log = logging.getLogger(__name__)


class QueueState(str, Enum):
    """The queue's state, in the order the ``Queue:State`` mbbi enumerates them."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    PAUSED = "paused"


class OnFailure(str, Enum):
    """What the queue does when an item fails (``Queue:OnFailure``)."""

    STOP = "stop"
    CONTINUE = "continue"


class QueueRunner:
    """Runs the items of a :class:`PlanQueue` one after the other.

    Parameters
    ----------
    queue
        The items.
    commands
        Runs plans (the bridge, or the IOC's gated commands). Its ``submit`` checks each item
        again (the worker validates plan, arguments and metadata against the registry in
        service then, which a Reload may have changed): a refusal ends the item ``fail``.
    say
        Writes a line to Status.
    changed
        Called after each change the runner makes (the PVs are published from it).
    """

    def __init__(
        self,
        queue: PlanQueue,
        commands: Commands,
        say: Callable[[str], Awaitable[None]],
        changed: Callable[[], Awaitable[None]],
    ) -> None:
        self.queue = queue
        self.commands = commands
        self.say = say
        self.changed = changed
        self.state = QueueState.IDLE
        self.reason = ""  # why the queue stopped on an item, "" if it did not
        self.failed = False  # ... and it was a failure (fail, abort): Queue:State is MINOR
        self.autostart = False
        self.loop = queue.settings.get("loop") == "1"
        self.on_failure = OnFailure(queue.settings.get("on_failure", OnFailure.STOP.value))
        self.task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._single = False
        self._stopping_seen = False
        self._shutting_down = False
        self._paused = False

    # -- asked by clients -------------------------------------------------------------

    def direct_run_refusal(self) -> str:
        """Why a direct Start or Submit is refused now ("" while the queue is stopped)."""
        if self.state == QueueState.IDLE:
            return ""
        return (
            "the queue is running: add the plan to the queue (Queue:Add) or stop the queue "
            "(Queue:Stop) first"
        )

    def start(self, *, single: bool = False) -> asyncio.Task[None]:
        """Start running items (``single``: one item only); Refused if it cannot start."""
        if self._shutting_down:
            raise Refused("the IOC is shutting down")
        if self.state != QueueState.IDLE:
            raise Refused(f"the queue is already {self.state.value}")
        if not self.queue.items:
            raise Refused("the queue is empty: add items first (Queue:Add)")
        if self.commands.busy:
            raise Refused("a plan started directly is in progress; start the queue once it ended")
        self.state = QueueState.RUNNING
        self.reason, self.failed = "", False
        self._stop_requested = False
        self._single = single
        self._paused = False
        # a context of its own: the runner is no client's write (the gate's caller is not
        # inherited from the put that started it)
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run(), context=contextvars.Context())
        return self.task

    def request_stop(self) -> None:
        """Stop once the running item has ended."""
        if self.state == QueueState.IDLE:
            raise Refused("the queue is not running")
        self._stop_requested = True
        self.autostart = False  # stopped by hand: stays stopped until started again
        self.state = QueueState.STOPPING

    async def set_loop(self, on: bool) -> None:
        await self.queue.set_setting("loop", "1" if on else "0")
        self.loop = on

    async def set_on_failure(self, policy: OnFailure) -> None:
        await self.queue.set_setting("on_failure", policy.value)
        self.on_failure = policy

    async def maybe_autostart(self) -> bool:
        """Start the queue if Autostart is on and it can start; whether it did."""
        if not self.autostart or self.state != QueueState.IDLE or self._shutting_down:
            return False
        if not self.queue.items or self.commands.busy:
            return False
        self.start()
        await self.say("queue started (Autostart)")
        await self.changed()
        return True

    # -- shutdown -----------------------------------------------------------------------

    def shutting_down(self) -> None:
        """The IOC is ending: run nothing more; the item the shutdown ends is interrupted."""
        self._shutting_down = True
        self._stop_requested = True

    async def close(self, timeout: float = 1.0) -> None:
        """Let the runner record what the shutdown did to its item, then end it."""
        task = self.task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- the events ---------------------------------------------------------------------

    async def observe(self, event: WorkerEvent) -> None:
        """An event the IOC publishes (in order, before a plan's future resolves)."""
        if isinstance(event, RunOpened):
            if self.state != QueueState.IDLE:
                self.queue.note_run(event.uid, event.scan_id)
        elif isinstance(event, StateChanged):
            if self.state == QueueState.IDLE:
                return
            if event.state == "stopping":
                self._stopping_seen = True
            paused = event.state == "paused"
            if paused != self._paused:
                self._paused = paused
                if self.state in (QueueState.RUNNING, QueueState.PAUSED):
                    self.state = QueueState.PAUSED if paused else QueueState.RUNNING
                await self.changed()
        elif isinstance(event, PlanFinished) and self.state == QueueState.IDLE:
            await self.maybe_autostart()  # a plan started directly has ended

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        finished: Record | None = None
        again = False
        try:
            while True:
                go_on = not self._stop_requested and not (self._single and finished)
                record = await self.queue.advance(finished, start_next=go_on, again=again)
                finished, again = None, False
                if record is None:
                    break
                finished = await self._execute(record)
                again = self.loop and finished.state in (ItemState.SUCCESS, ItemState.FAIL)
                if not self._should_go_on(finished):
                    again = again and finished.state == ItemState.SUCCESS
                    self._stop_requested = True
                # not published here: the next item is submitted first (see _execute)
        finally:
            if finished is not None:
                await self._final(finished, again)
            self.state = QueueState.IDLE
            self._paused = False
            self.task = None
            await self._ended()

    async def _final(self, finished: Record, again: bool) -> None:
        try:
            await self.queue.advance(finished, start_next=False, again=again)
        except Exception:
            log.exception("queue: recording the end of %s failed", finished.item.uid)

    async def _ended(self) -> None:
        try:
            await self.changed()
            if self.reason:
                await self.say(f"queue stopped: {self.reason}")
            elif not self._shutting_down:
                left = len(self.queue.items)
                await self.say(f"queue stopped; {left} item{'s' if left != 1 else ''} left")
        except Exception:
            log.exception("queue: publishing its end failed")

    async def _execute(self, record: Record) -> Record:
        """Run one item (already marked running); its record once it has ended."""
        item = record.item
        self._stopping_seen = False
        try:  # checked again by the worker, against the plans in service now
            future = await self.commands.submit(item.plan, item.args, item.run_metadata())
        except Exception as exc:  # ArgumentError, Refused: said in words
            return replace(
                record, state=ItemState.FAIL, ended=time.time(), message=f"refused at run: {exc}"
            )
        await self.changed()
        await self.say(f"queue: running {item.plan} ({item.uid})")
        result: PlanFinished = await asyncio.shield(future)
        running = self.queue.running or record
        state = outcome(result.exit_status, self._stopping_seen, result.interrupted)
        message = result.message
        if self._shutting_down:
            state, message = ItemState.INTERRUPTED, f"the IOC shut down while it ran: {message}"
        return replace(
            running,
            state=state,
            ended=time.time(),
            run_uids=result.run_uids or running.run_uids,
            message=message,
        )

    def _should_go_on(self, finished: Record) -> bool:
        """After an item: go on, or stop the queue (and say why)."""
        item = finished.item
        failed = finished.state in (ItemState.FAIL, ItemState.INTERRUPTED)
        if failed and self.on_failure == OnFailure.STOP:
            how = "failed" if finished.state == ItemState.FAIL else "was interrupted"
            self.reason = f"item {item.uid} ({item.plan}) {how}: {finished.message}"
        elif finished.state in (ItemState.ABORT, ItemState.STOPPED):
            # the operator ended the plan: the queue waits for them
            self.reason = f"item {item.uid} ({item.plan}) {finished.state.value}"
        else:
            return True
        self.failed = finished.state != ItemState.STOPPED
        self.autostart = False
        return False
