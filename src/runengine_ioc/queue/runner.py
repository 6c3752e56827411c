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

While an item runs, the next items (:data:`HAND_OVER_AHEAD`) are handed to the worker ahead
of their turn (:meth:`Commands.submit_next
<runengine_ioc.engine.commands.Commands.submit_next>`): the worker starts each the moment the
one before it ends in success, so no round trip through the IOC lies between two runs, and
the runner notes afterwards what the worker did (a plan's end names the plan that followed
it). If the IOC is killed before it has noted an item the worker started, the item is still
queued on disk, but a run file names it: at the next start it is marked ``interrupted``, not
run again (:func:`~.plan_queue.open_queue`). A failed, stopped or aborted item drops the items
handed over (the queue's policy decides as before); so does a change of the queue that may
alter what comes next (Add at the front, Remove, Move, Clear, RunNow) or a Queue:Stop, which
first waits until the runner has noted any item the worker has already started.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from enum import Enum

from ..engine.commands import Commands
from ..engine.events import PlanFinished, Refused, RunOpened, StateChanged, WorkerEvent
from .items import Item, ItemState, Record, outcome
from .plan_queue import PlanQueue

#: How many items the queue hands to the worker ahead of their turn: enough that the IOC,
#: busy publishing one item's end, never holds up the next (measured with 1000 count(num=1)
#: items: with 2 the chain broke about every tenth item, with 4 about one item in twelve
#: waited 20 ms or more, with 8 one in twenty; median gap 8.6, 5.1 and 4.5-4.7 ms).
HAND_OVER_AHEAD = 8

#: An item handed to the worker ahead of its turn, and the future of its plan.
Handed = tuple[Item, "asyncio.Future[PlanFinished]"]

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
        self._handed: list[Handed] = []  # handed over ahead of their turn, in order
        # the runs of items the worker started but the runner has not noted yet, one list per
        # item, in order (from the events: a plan's end names the plan that followed it)
        self._unnoted: deque[list[tuple[str, int]]] = deque()
        self._handing = asyncio.Lock()  # a hand-over, or a change of what comes next
        self._handover_noted = asyncio.Event()  # set: nothing handed over, nothing unnoted
        self._handover_noted.set()
        queue.reorder_guard = self.holding_next

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

    async def request_stop(self) -> None:
        """Stop once the running item has ended (if the next one has already started in its
        place, once that one has ended)."""
        if self.state == QueueState.IDLE:
            raise Refused("the queue is not running")
        self._stop_requested = True
        self.autostart = False  # stopped by hand: stays stopped until started again
        self.state = QueueState.STOPPING
        async with self.holding_next():
            pass  # the item handed over is withdrawn (or, if it started, the queue stops after it)

    @contextlib.asynccontextmanager
    async def holding_next(self) -> AsyncIterator[None]:
        """Around a change of what comes next: the item handed to the worker ahead of its turn
        is withdrawn, or, if it has started, noted running (so no longer queued) first; and no
        item is handed over until the change is made."""
        async with self._handing:
            if self._handed:
                await self.commands.cancel_next()
                self._handed = [h for h in self._handed if not h[1].cancelled()]
                self._settle()
            await self._handover_noted.wait()
            yield

    def _settle(self) -> None:
        """``_handover_noted`` is set when nothing is handed over and nothing started unnoted."""
        if not self._handed and not self._unnoted:
            self._handover_noted.set()
        else:
            self._handover_noted.clear()

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
            if self.state == QueueState.IDLE:
                return
            if self._unnoted:  # the item the worker started last, not noted yet
                self._unnoted[-1].append((event.uid, event.scan_id))
            else:
                self.queue.note_run(event.uid, event.scan_id)
        elif isinstance(event, PlanFinished) and event.followed_by is not None:
            if self.state != QueueState.IDLE:
                self._unnoted.append([])  # a handed-over item started: its runs follow
                self._settle()
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
        started: Handed | None = None  # the next item, started by the worker already
        try:
            while True:
                go_on = started is not None or not (
                    self._stop_requested or (self._single and finished)
                )
                record = await self.queue.advance(
                    finished,
                    start_next=go_on,
                    again=again,
                    started=started[0] if started is not None else None,
                )
                if started is not None and self._unnoted:
                    for run_uid, scan_id in self._unnoted.popleft():
                        self.queue.note_run(run_uid, scan_id)
                self._settle()
                finished, again = None, False
                if record is None:
                    break
                finished, started = await self._execute(
                    record, started[1] if started is not None else None
                )
                again = self.loop and finished.state in (ItemState.SUCCESS, ItemState.FAIL)
                if not self._should_go_on(finished):
                    again = again and finished.state == ItemState.SUCCESS
                    self._stop_requested = True
                # not published here: the next item is submitted first (see _execute)
        finally:
            self._handed = []
            self._unnoted.clear()
            self._settle()
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

    async def _execute(
        self, record: Record, future: asyncio.Future[PlanFinished] | None = None
    ) -> tuple[Record, Handed | None]:
        """Run one item (already marked running; ``future`` if the worker started it); its
        record once it has ended, and the next item if the worker has started it already."""
        item = record.item
        self._stopping_seen = False
        if future is None:
            try:  # checked again by the worker, against the plans in service now
                future = await self.commands.submit(item.plan, item.args, item.run_metadata())
            except Exception as exc:  # ArgumentError, Refused: said in words
                return replace(
                    record,
                    state=ItemState.FAIL,
                    ended=time.time(),
                    message=f"refused at run: {exc}",
                ), None
        await self._hand_over_next()  # first: the item may be short
        await self.changed()
        await self.say(f"queue: running {item.plan} ({item.uid})")
        result: PlanFinished = await asyncio.shield(future)
        started: Handed | None = None
        if result.followed_by is not None and self._handed:
            started = self._handed.pop(0)  # the first handed over follows it
        else:
            self._handed = []  # none of them starts (the bridge has cancelled their futures)
        if started is not None and not self._handing.locked():
            # the one after it goes to the worker now, before the bookkeeping of this end
            # and that start eats into the started item's run (a change of the queue under
            # way holds the lock: then after it, from the started item's _execute)
            await self._hand_over_next(skip=started[0])
        self._settle()
        running = self.queue.running or record
        state = outcome(result.exit_status, self._stopping_seen, result.interrupted)
        message = result.message
        if self._shutting_down:
            state, message = ItemState.INTERRUPTED, f"the IOC shut down while it ran: {message}"
        ended = replace(
            running,
            state=state,
            ended=time.time(),
            run_uids=result.run_uids or running.run_uids,
            message=message,
        )
        return ended, started

    async def _hand_over_next(self, skip: Item | None = None) -> None:
        """Give the worker the next items (after ``skip``, started but not yet noted), up to
        :data:`HAND_OVER_AHEAD`, each to start the moment the one before it succeeds.

        Not when the queue is to stop after this item (Stop, RunNow's single item, shutdown).
        A refusal now is left to the item's own turn, which records it.
        """
        async with self._handing:
            waiting = [item for item in self.queue.items if skip is None or item.uid != skip.uid]
            handed = [item.uid for item, _ in self._handed]
            if handed != [item.uid for item in waiting[: len(handed)]]:
                return  # (never: a change of the queue withdraws what was handed over)
            for item in waiting[len(handed) : HAND_OVER_AHEAD]:
                if not self._may_hand_over():
                    return
                try:
                    future = await self.commands.submit_next(
                        item.plan, item.args, item.run_metadata()
                    )
                except Exception as exc:  # ArgumentError, Refused
                    log.debug("queue: %s not handed over ahead: %s", item.uid, exc)
                    return
                if future is None:
                    return
                self._handed.append((item, future))
                self._settle()

    def _may_hand_over(self) -> bool:
        return not (self._stop_requested or self._single or self._shutting_down)

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
