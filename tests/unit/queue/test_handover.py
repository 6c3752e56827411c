"""The queue hands its next item to the worker ahead of its turn, and takes it back when the
queue changes or stops; a crash between the worker starting it and the IOC noting it never
lets it run twice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runengine_ioc.engine.events import ExitStatus, RunOpened
from runengine_ioc.engine.registry import ArgumentError
from runengine_ioc.queue.items import ItemState
from runengine_ioc.queue.plan_queue import PlanQueue, open_queue
from runengine_ioc.queue.runner import OnFailure, QueueRunner
from runengine_ioc.queue.store import QUEUE_DB, QueueStore
from tests.polling import async_wait_until

from .scripted import ScriptedCommands, item, run, submitted


async def handed(commands: ScriptedCommands) -> None:
    await async_wait_until(lambda: bool(commands.handed), 5, what="a hand-over")


def test_each_next_item_is_started_by_the_worker_and_its_runs_are_its_own(
    tmp_path: Path,
) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        for uid in "abc":
            await queue.add(item(uid))
        task = runner.start()
        for n in range(1, 4):
            await submitted(commands, n)
            if n < 3:
                await handed(commands)
            await runner.observe(RunOpened(f"run{n}", n, "count", 1, 0.0))
            await runner.observe(commands.finish())
        await task
        assert commands.handed_over == ["b", "c"]  # a was submitted, b and c followed on
        assert [(r.item.uid, r.state, r.scan_ids) for r in queue.history] == [
            ("a", ItemState.SUCCESS, (1,)),
            ("b", ItemState.SUCCESS, (2,)),
            ("c", ItemState.SUCCESS, (3,)),
        ]

    run(tmp_path, body)


def test_a_failed_item_drops_the_hand_over_and_the_policy_decides(tmp_path: Path) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        await runner.set_on_failure(OnFailure.CONTINUE)
        await queue.add(item("a"))
        await queue.add(item("b"))
        task = runner.start()
        await submitted(commands, 1)
        await handed(commands)
        commands.finish(ExitStatus.FAIL, "RuntimeError: boom")
        await submitted(commands, 2)  # b submitted anew by the runner
        commands.finish()
        await task
        assert commands.handed_over == []
        assert [(r.item.uid, r.state) for r in queue.history] == [
            ("a", ItemState.FAIL),
            ("b", ItemState.SUCCESS),
        ]

    run(tmp_path, body)


@pytest.mark.parametrize("change", ["move", "remove", "clear", "add_front", "stop"])
def test_a_change_of_what_comes_next_withdraws_the_hand_over(tmp_path: Path, change: str) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        for uid in "abc":
            await queue.add(item(uid))
        task = runner.start()
        await submitted(commands, 1)
        await handed(commands)
        if change == "move":
            await queue.move("c", 0)
        elif change == "remove":
            await queue.remove("b")
        elif change == "clear":
            await queue.clear()
        elif change == "add_front":
            await queue.add(item("z"), front=True)
        else:
            await runner.request_stop()
        assert commands.handed == []  # withdrawn before the change was made
        commands.finish()
        expected = {"move": "c", "remove": "c", "add_front": "z"}.get(change)
        if expected is not None:
            await submitted(commands, 2)
            assert commands.submitted[1][1]["queue_item_uid"] == expected
            await runner.request_stop()
            commands.finish()
        await task
        assert commands.handed_over == []

    run(tmp_path, body)


def test_a_change_after_the_worker_started_the_next_item_sees_it_running(
    tmp_path: Path,
) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        for uid in "abc":
            await queue.add(item(uid))
        task = runner.start()
        await submitted(commands, 1)
        await handed(commands)
        commands.finish()  # b starts in the worker before the runner has noted it
        with pytest.raises(ArgumentError, match="no queued item"):
            await queue.remove("b")  # waited for the runner: b is running, not queued
        assert queue.running is not None and queue.running.item.uid == "b"
        await runner.request_stop()
        commands.finish()
        await task
        assert [r.item.uid for r in queue.history] == ["a", "b"]
        assert [i.uid for i in queue.items] == ["c"]

    run(tmp_path, body)


def _run_file(data: Path, name: str, item_uid: str, stopped: bool) -> None:
    lines = [{"name": "start", "doc": {"uid": f"run-{name}", "scan_id": 7, "time": 1.0,
                                       "queue_item_uid": item_uid}}]  # fmt: skip
    if stopped:
        lines.append({"name": "stop", "doc": {"exit_status": "success"}})
    (data / f"scan000007_{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.mark.parametrize("stopped", [False, True], ids=["cut", "ended"])
def test_a_handed_over_item_that_a_run_shows_started_is_not_run_again_after_a_crash(
    tmp_path: Path, stopped: bool
) -> None:
    store = QueueStore(tmp_path / QUEUE_DB)
    for uid in "bc":
        store.add(item(uid))
    store.close()
    _run_file(tmp_path, "b", "b", stopped)
    queue, said = open_queue(tmp_path)
    try:
        assert [i.uid for i in queue.items] == ["c"]
        (record,) = queue.history
        assert (record.item.uid, record.state, record.run_uids) == (
            "b",
            ItemState.INTERRUPTED,
            ("run-b",),
        )
        assert "queue item b (count) interrupted" in said
    finally:
        queue.close()
    # without a run naming it (or with only a run older than the item), it waits its turn
    other = tmp_path / "other"
    other.mkdir()
    store = QueueStore(other / QUEUE_DB)
    store.add(replace(item("d"), added=5.0))
    store.close()
    _run_file(other, "old", "d", True)  # opened at t=1, before d was added: another item's
    queue, _ = open_queue(other)
    try:
        assert [i.uid for i in queue.items] == ["d"] and not queue.history
    finally:
        queue.close()
