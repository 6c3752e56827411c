"""The queue's SQLite store and PlanQueue: persistence across reopening, order, transitions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from runengine_ioc.engine.registry import ArgumentError
from runengine_ioc.queue.items import Item, ItemState, Record
from runengine_ioc.queue.plan_queue import PlanQueue, open_queue, runs_of_items
from runengine_ioc.queue.store import QUEUE_DB, QueueStore


def make(uid: str, plan: str = "count") -> Item:
    return Item(uid, plan, {"detectors": ["det"], "num": 1}, {"k": uid}, "user", "host", 1.0)


def test_items_keep_their_order_and_contents_across_reopening(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / QUEUE_DB)
    for uid in "abc":
        store.add(make(uid))
    store.add(make("z"), front=True)
    store.close()
    again = QueueStore(tmp_path / QUEUE_DB)
    assert [item.uid for item in again.queued()] == ["z", "a", "b", "c"]
    assert again.queued()[1] == make("a")
    again.close()


def test_a_uid_is_unique_among_queued_and_ended_items(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / QUEUE_DB)
    store.add(make("a"))
    with pytest.raises(sqlite3.IntegrityError):
        store.add(make("a"))
    store.transition(started=("a", 2.0))
    store.transition(finished=Record(make("a"), ItemState.SUCCESS, 2.0, 3.0))
    with pytest.raises(sqlite3.IntegrityError):
        store.add(make("a"))
    store.close()


def test_reorder_remove_and_history(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / QUEUE_DB)
    for uid in "abcd":
        store.add(make(uid))
    store.reorder(["d", "a", "c", "b"])
    store.remove(["c"])
    assert [item.uid for item in store.queued()] == ["d", "a", "b"]
    # one transaction: d ends, a starts; then a ends, b starts, and d comes back (loop)
    store.transition(started=("d", 1.0))
    done = Record(make("d"), ItemState.FAIL, 1.0, 2.0, (7,), ("run-d",), "boom")
    store.transition(finished=done, started=("a", 2.0))
    assert [r.item.uid for r in store.running()] == ["a"]
    assert store.lookup("d") == done
    assert store.lookup("a") is not None and store.lookup("a").state == ItemState.RUNNING  # type: ignore[union-attr]
    store.add_run("a", ["run-a"], [8])
    assert store.running()[0].run_uids == ("run-a",)
    ended = Record(make("a"), ItemState.SUCCESS, 2.0, 3.0, (8,), ("run-a",))
    store.transition(finished=ended, started=("b", 3.0), append=make("d2"))
    assert [r.item.uid for r in store.history(10)] == ["d", "a"]
    assert [r.item.uid for r in store.history(1)] == ["a"]  # the latest
    assert [item.uid for item in store.queued()] == ["d2"]
    assert store.history_count() == 2
    assert store.clear_history() == 2
    assert store.history(10) == [] and store.lookup("d") is None
    store.close()


def test_an_item_can_only_start_from_the_queue(tmp_path: Path) -> None:
    """A start of an item that is not queued (removed meanwhile) changes nothing."""
    store = QueueStore(tmp_path / QUEUE_DB)
    store.add(make("a"))
    store.remove(["a"])
    store.transition(started=("a", 1.0))
    assert store.running() == [] and store.lookup("a") is None
    store.close()


def test_a_failed_transaction_leaves_everything_as_it_was(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / QUEUE_DB)
    store.add(make("a"))
    store.add(make("b"))
    store.transition(started=("a", 1.0))
    bad = Record(make("a"), ItemState.RUNNING)  # not a final state: refused
    with pytest.raises(ValueError):
        store.transition(finished=bad, started=("b", 2.0))
    with pytest.raises(sqlite3.IntegrityError):  # the append clashes: the whole change is undone
        store.transition(finished=Record(make("a"), ItemState.SUCCESS, 1.0, 2.0), append=make("b"))
    assert [r.item.uid for r in store.running()] == ["a"]
    assert [item.uid for item in store.queued()] == ["b"]
    assert store.history_count() == 0
    store.close()


def test_plan_queue_changes_are_on_disk_when_they_return(tmp_path: Path) -> None:
    async def main() -> None:
        queue, note = open_queue(tmp_path)
        assert note == ""
        for uid in "abc":
            await queue.add(make(uid))
        with pytest.raises(ArgumentError, match="already used"):
            await queue.add(make("a"))
        await queue.move("c", 0)
        await queue.move("-1", 1)  # by position
        assert [i.uid for i in queue.items] == ["c", "b", "a"]
        assert (await queue.remove("1")).uid == "b"
        with pytest.raises(ArgumentError, match="no queued item at position 5"):
            await queue.remove("5")
        with pytest.raises(ArgumentError, match="no queued item has uid"):
            await queue.remove("nope")
        running = await queue.advance(None, start_next=True)
        assert running is not None and running.item.uid == "c"
        queue.note_run("run-c", 3)
        queue.close()  # a "crash" here: c was running

        reopened, note = open_queue(tmp_path)
        assert "queue item c (count) interrupted" in note
        assert "1 items waiting" in note
        (record,) = reopened.history
        assert (record.state, record.run_uids, record.scan_ids) == (
            ItemState.INTERRUPTED,
            ("run-c",),
            (3,),
        )
        assert [i.uid for i in reopened.items] == ["a"]
        assert reopened.running is None
        assert (await reopened.lookup("c")) == record
        assert (await reopened.lookup("zzz")) is None
        reopened.close()

    asyncio.run(main())


def test_an_interrupted_item_finds_its_run_in_the_run_files(tmp_path: Path) -> None:
    """Killed before the run was noted in the store: the run file names its item."""

    async def main() -> None:
        queue = PlanQueue(QueueStore(tmp_path / QUEUE_DB))
        await queue.add(make("a"))
        await queue.advance(None, start_next=True)
        queue.close()

    asyncio.run(main())
    start = {"uid": "run-uid-1", "scan_id": 12, "queue_item_uid": "a", "time": 0}
    (tmp_path / "scan000012_run-uid-.jsonl").write_text(
        json.dumps({"name": "start", "doc": start}) + "\n"
    )
    assert runs_of_items(tmp_path) == {"a": [("run-uid-1", 12)]}
    queue, _ = open_queue(tmp_path)
    (record,) = queue.history
    assert record.run_uids == ("run-uid-1",) and record.scan_ids == (12,)
    queue.close()


def test_concurrent_adds_all_land_in_the_order_they_were_asked(tmp_path: Path) -> None:
    async def main() -> None:
        queue = PlanQueue(QueueStore(tmp_path / QUEUE_DB))
        await asyncio.gather(*(queue.add(make(f"i{n:03d}")) for n in range(100)))
        assert [i.uid for i in queue.items] == [f"i{n:03d}" for n in range(100)]
        queue.close()
        store = QueueStore(tmp_path / QUEUE_DB)
        assert [i.uid for i in store.queued()] == [f"i{n:03d}" for n in range(100)]
        store.close()

    asyncio.run(main())
