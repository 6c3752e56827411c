"""The queue as the event loop sees it: ordered items, the running one, recent history.

Every change is written to the :class:`~.store.QueueStore` first (one transaction, on the
store's own thread, so the loop never waits on the disk) and only then made in memory, so
that whatever a client has been told (a put completed, a PV published) is on disk. Changes
are serialised by one lock: two clients adding at once get two items, in the order their
puts arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..data.files import find_interrupted_runs
from ..engine.registry import ArgumentError
from .items import FINAL_STATES, Item, ItemState, Record
from .store import QUEUE_DB, QueueStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: History entries kept in memory (and shown by the History PV, as far as they fit).
DEFAULT_HISTORY_SIZE = 50


def runs_by_item(data_dir: str | Path) -> dict[str, list[tuple[str, int, float]]]:
    """Every run in ``data_dir`` (ended or not) by the queue item its start document names,
    oldest first, as (run uid, scan id, start time).

    A run's start document names its item (``queue_item_uid``): when the IOC was killed before
    it could note the run in the store, the file still says which item opened it.
    """
    found: dict[str, list[tuple[str, int, float]]] = {}
    for path in sorted(Path(data_dir).glob("*.jsonl")):
        try:
            with open(path, "rb") as file:
                start = json.loads(file.readline()).get("doc", {})
            item_uid = start.get("queue_item_uid")
            run = (str(start.get("uid", "")), int(start.get("scan_id") or 0), float(start["time"]))
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            continue
        if isinstance(item_uid, str):
            found.setdefault(item_uid, []).append(run)
    return found


def runs_of_items(
    data_dir: str | Path, runs: Mapping[str, list[tuple[str, int, float]]] | None = None
) -> dict[str, list[tuple[str, int]]]:
    """The interrupted runs (no stop document) in ``data_dir``, by the queue item they ran
    (out of ``runs``, :func:`runs_by_item`, when it has been read already)."""
    runs = runs_by_item(data_dir) if runs is None else runs
    interrupted = {run.uid for run in find_interrupted_runs(data_dir)}
    found: dict[str, list[tuple[str, int]]] = {}
    for item_uid, item_runs in runs.items():
        cut = [(uid, scan_id) for uid, scan_id, _ in item_runs if uid in interrupted]
        if cut:
            found[item_uid] = cut
    return found


def open_queue(data_dir: str | Path, *, durable: bool = False) -> tuple[PlanQueue, str]:
    """The queue kept in ``data_dir`` (created if new), after marking the items a crash left
    running ``interrupted``; and a line for the start-up Status ("" if nothing to say)."""
    queue = PlanQueue(QueueStore(Path(data_dir) / QUEUE_DB, durable=durable))
    running = bool(queue.store.running())
    runs = runs_by_item(data_dir) if running or queue.items else {}  # the files read once
    recovered = queue.recover(runs_of_items(data_dir, runs) if running else None)
    if queue.items:
        # an item handed to the worker ahead of its turn may have started before the IOC
        # noted it: a run naming it (opened after it was added) says so
        for item in list(queue.items):
            started = [(uid, scan) for uid, scan, t in runs.get(item.uid, ()) if t >= item.added]
            if started:
                recovered.append(queue.recover_started(item.uid, started))
    notes = [f"queue item {r.item.uid} ({r.item.plan}) interrupted" for r in recovered]
    if queue.items:
        notes.append(f"queue: {len(queue.items)} items waiting (Queue:Start)")
    return queue, "; ".join(notes)


class PlanQueue:
    """Ordered items, the running one and the recent history, kept on disk as they change.

    Parameters
    ----------
    store
        The database (owned from here on: :meth:`close` closes it).
    history_size
        How many of the latest history entries are kept in memory.
    """

    def __init__(self, store: QueueStore, *, history_size: int = DEFAULT_HISTORY_SIZE) -> None:
        self.store = store
        snapshot = store.snapshot(history_size)
        self.items: list[Item] = snapshot.queued
        self.running: Record | None = snapshot.running[-1] if snapshot.running else None
        self.history: deque[Record] = deque(snapshot.history, maxlen=history_size)
        self.history_count = snapshot.history_count
        self.settings = snapshot.settings
        self._executor_: ThreadPoolExecutor | None = None  # started at the first change
        self._lock = asyncio.Lock()
        self._pending: set[Future[Any]] = set()
        #: held around a change that may alter which item comes next (set by the runner)
        self.reorder_guard: Callable[[], AbstractAsyncContextManager[None]] | None = None

    @classmethod
    def in_memory(cls) -> PlanQueue:
        """A queue with no file (an IOC built without a data directory: tests, panels)."""
        return cls(QueueStore(":memory:"))

    @property
    def _executor(self) -> ThreadPoolExecutor:
        if self._executor_ is None:
            self._executor_ = ThreadPoolExecutor(1, thread_name_prefix="queue-store")
        return self._executor_

    def close(self) -> None:
        """Finish the writes under way, then close the database and its thread."""
        if self._executor_ is not None:
            self._executor_.shutdown(wait=True)
        self.store.close()

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call, *args)

    # -- start-up -----------------------------------------------------------------------

    def recover(
        self, runs: Mapping[str, list[tuple[str, int]]] | None = None, now: float | None = None
    ) -> list[Record]:
        """Mark items left running by a crash ``interrupted`` (blocking; before serving).

        Their runs are what the store noted, or else what ``runs`` (:func:`runs_of_items`)
        found in the data directory. They are not run again.
        """
        now = time.time() if now is None else now
        recovered = []
        for record in self.store.running():
            found = (runs or {}).get(record.item.uid, [])
            run_uids = record.run_uids or tuple(uid for uid, _ in found)
            scan_ids = record.scan_ids or tuple(scan for _, scan in found)
            ended = replace(
                record,
                state=ItemState.INTERRUPTED,
                ended=now,
                run_uids=run_uids,
                scan_ids=scan_ids,
                message="the IOC stopped while it ran (not run again)",
            )
            self.store.transition(finished=ended)
            self.history.append(ended)
            self.history_count += 1
            recovered.append(ended)
        self.running = None
        return recovered

    def recover_started(self, uid: str, runs: list[tuple[str, int]]) -> Record:
        """Mark a queued item that a run on disk shows had started ``interrupted`` (blocking;
        before serving): the IOC ended before it noted it running. It is not run again."""
        item = next(item for item in self.items if item.uid == uid)
        now = time.time()
        ended = Record(
            item,
            ItemState.INTERRUPTED,
            started=now,
            ended=now,
            run_uids=tuple(run for run, _ in runs),
            scan_ids=tuple(scan for _, scan in runs),
            message="the IOC stopped as it started (not run again)",
        )
        self.store.transition(finished=ended)
        self.items.remove(item)
        self.history.append(ended)
        self.history_count += 1
        return ended

    # -- the queue's contents -----------------------------------------------------------

    def resolve(self, selector: str) -> str:
        """The uid of a queued item named by its uid or its position (0 first, -1 last)."""
        text = selector.strip()
        try:
            index = int(text)
        except ValueError:
            if any(item.uid == text for item in self.items):
                return text
            raise ArgumentError(f"no queued item has uid {text!r}") from None
        if not -len(self.items) <= index < len(self.items):
            raise ArgumentError(
                f"no queued item at position {index} (the queue holds {len(self.items)})"
            )
        return self.items[index].uid

    def position(self, uid: str) -> int:
        return next(i for i, item in enumerate(self.items) if item.uid == uid)

    def in_use(self, uid: str) -> bool:
        return any(item.uid == uid for item in self.items) or (
            self.running is not None and self.running.item.uid == uid
        )

    async def add(self, item: Item, *, front: bool = False) -> None:
        """Queue an item (ArgumentError if its uid was used before); on disk when this
        returns."""
        async with self._guarded(front), self._lock:
            try:
                await self._run(lambda: self.store.add(item, front=front))
            except sqlite3.IntegrityError:
                raise ArgumentError(f"uid {item.uid!r} is already used by another item") from None
            if front:
                self.items.insert(0, item)
            else:
                self.items.append(item)

    async def remove(self, selector: str) -> Item:
        async with self._guarded(), self._lock:
            uid = self.resolve(selector)
            await self._run(self.store.remove, [uid])
            return self.items.pop(self.position(uid))

    async def move(self, selector: str, to: int) -> Item:
        """Move a queued item to position ``to`` (0 first, -1 last)."""
        async with self._guarded(), self._lock:
            uid = self.resolve(selector)
            count = len(self.items)
            if not -count <= to < count:
                raise ArgumentError(f"position {to} is outside the queue (0 to {count - 1})")
            order = list(self.items)
            item = order.pop(self.position(uid))
            order.insert(to % count, item)
            await self._run(self.store.reorder, [entry.uid for entry in order])
            self.items = order
            return item

    async def clear(self) -> int:
        """Remove every queued item (not the running one); how many."""
        async with self._guarded(), self._lock:
            uids = [item.uid for item in self.items]
            await self._run(self.store.remove, uids)
            self.items = []
            return len(uids)

    def _guarded(self, reorders: bool = True) -> AbstractAsyncContextManager[None]:
        """Around a change that may take the first item away or put another before it: the
        runner withdraws the item it handed to the worker ahead of its turn (or, if that has
        started, waits until it is noted running) and hands none over until it is made."""
        if not reorders or self.reorder_guard is None:
            return contextlib.nullcontext()
        return self.reorder_guard()

    async def clear_history(self) -> int:
        async with self._lock:
            count = await self._run(self.store.clear_history)
            self.history.clear()
            self.history_count = 0
            return count

    async def set_setting(self, key: str, value: str) -> None:
        async with self._lock:
            await self._run(self.store.set_setting, key, value)
            self.settings[key] = value

    # -- running ------------------------------------------------------------------------

    async def advance(
        self,
        finished: Record | None,
        *,
        start_next: bool,
        again: bool = False,
        started: Item | None = None,
    ) -> Record | None:
        """End the running item (into the history) and start the next, in one transaction.

        ``again`` puts the finished item's plan back at the end as a new item (loop mode).
        ``started`` is an item the worker has already started (handed over to follow the
        finished one): it is the next, wherever it stands. Returns the new running record,
        None when nothing starts.
        """
        async with self._lock:
            now = time.time()
            appended = finished.item.again() if again and finished is not None else None
            waiting = [*self.items, appended] if appended is not None else self.items
            nxt = waiting[0] if start_next and waiting else None
            if started is not None:
                nxt = started
            await self._run(
                lambda: self.store.transition(
                    finished=finished,
                    started=(nxt.uid, now) if nxt is not None else None,
                    append=appended,
                )
            )
            if finished is not None:
                self.history.append(finished)
                self.history_count += 1
            if appended is not None:
                self.items.append(appended)
            if nxt is not None:
                self.items = [item for item in self.items if item.uid != nxt.uid]
                self.running = Record(nxt, ItemState.RUNNING, started=now)
            else:
                self.running = None
            return self.running

    def note_run(self, run_uid: str, scan_id: int) -> None:
        """The running item opened a run: kept in memory now, on disk in order (not awaited:
        this is called while events are published, which must not wait on the disk)."""
        record = self.running
        if record is None or run_uid in record.run_uids:
            return
        record = replace(
            record, run_uids=(*record.run_uids, run_uid), scan_ids=(*record.scan_ids, scan_id)
        )
        self.running = record
        future = self._executor.submit(
            self.store.add_run, record.item.uid, record.run_uids, record.scan_ids
        )
        self._pending.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: Future[Any]) -> None:
        self._pending.discard(future)
        exc = future.exception()
        if exc is not None:
            log.error("queue: noting a run failed: %s", exc)

    # -- looking up ---------------------------------------------------------------------

    def find(self, uid: str) -> Record | None:
        """The item with this uid if it is in memory (queued, running, recent history)."""
        if self.running is not None and self.running.item.uid == uid:
            return self.running
        for item in self.items:
            if item.uid == uid:
                return Record(item, ItemState.QUEUED)
        for record in reversed(self.history):
            if record.item.uid == uid:
                return record
        return None

    async def lookup(self, uid: str) -> Record | None:
        """The item with this uid, wherever it is; None if the store never saw it."""
        found = self.find(uid)
        if found is not None:
            return found
        record = await self._run(self.store.lookup, uid)
        if record is not None and record.state not in FINAL_STATES | {ItemState.QUEUED}:
            return None  # running in the store but not here: a stale row
        return record
