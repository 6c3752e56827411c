"""The queue runner against scripted Commands: order, failure policy, stop, loop, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runengine_ioc.engine.events import ExitStatus, Refused, RunOpened, StateChanged
from runengine_ioc.queue.items import ItemState
from runengine_ioc.queue.plan_queue import PlanQueue
from runengine_ioc.queue.runner import OnFailure, QueueRunner, QueueState

from .scripted import ScriptedCommands, item, run, submitted


def test_items_run_in_order_with_their_item_in_the_metadata(tmp_path: Path) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        for uid in "abc":
            await queue.add(item(uid))
        task = runner.start()
        assert runner.direct_run_refusal()
        for n in range(1, 4):
            await submitted(commands, n)
            await runner.observe(RunOpened(f"run{n}", n, "count", 1, 0.0))
            await runner.observe(commands.finish())
        await task
        assert [md["queue_item_uid"] for _, md in commands.submitted] == ["a", "b", "c"]
        assert commands.submitted[0][1]["queued_by"] == {"user": "me", "host": "here"}
        assert [(r.item.uid, r.state, r.scan_ids) for r in queue.history] == [
            ("a", ItemState.SUCCESS, (1,)),
            ("b", ItemState.SUCCESS, (2,)),
            ("c", ItemState.SUCCESS, (3,)),
        ]
        assert runner.state == QueueState.IDLE and not runner.direct_run_refusal()

    run(tmp_path, body)


@pytest.mark.parametrize("policy", list(OnFailure))
def test_failure_policy(tmp_path: Path, policy: OnFailure) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        await runner.set_on_failure(policy)
        await queue.add(item("a"))
        await queue.add(item("b"))
        task = runner.start()
        await submitted(commands, 1)
        commands.finish(ExitStatus.FAIL, "RuntimeError: boom")
        if policy == OnFailure.CONTINUE:
            await submitted(commands, 2)
            commands.finish()
        await task
        states = [(r.item.uid, r.state) for r in queue.history]
        if policy == OnFailure.STOP:
            assert states == [("a", ItemState.FAIL)]
            assert [i.uid for i in queue.items] == ["b"] and runner.failed
        else:
            assert states == [("a", ItemState.FAIL), ("b", ItemState.SUCCESS)]
            assert not runner.failed
        assert queue.history[0].message == "RuntimeError: boom"

    run(tmp_path, body)


def test_stop_after_current_and_stopped_and_refused_at_run(tmp_path: Path) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        await queue.add(item("a"))
        await queue.add(item("bad", num="ten"))  # checked again when it runs: refused
        await queue.add(item("c"))
        await runner.set_on_failure(OnFailure.CONTINUE)
        task = runner.start()
        await submitted(commands, 1)
        commands.finish()
        await submitted(commands, 2)  # bad was refused at run, c runs
        await runner.observe(StateChanged("stopping", "running"))
        commands.finish(stopped=True)  # bluesky reports a stopped plan as a success
        await task
        assert [(r.item.uid, r.state) for r in queue.history] == [
            ("a", ItemState.SUCCESS),
            ("bad", ItemState.FAIL),
            ("c", ItemState.STOPPED),
        ]
        assert queue.history[1].message.startswith("refused at run: ")
        # Queue:Stop: the current item ends normally, nothing else starts
        await queue.add(item("d"))
        await queue.add(item("e"))
        task = runner.start()
        await submitted(commands, 3)
        await runner.request_stop()
        assert runner.state == QueueState.STOPPING
        commands.finish()
        await task
        assert [i.uid for i in queue.items] == ["e"]
        assert queue.history[-1].state == ItemState.SUCCESS
        with pytest.raises(Refused, match="not running"):
            await runner.request_stop()

    run(tmp_path, body)


def test_loop_mode_puts_items_back_and_a_busy_engine_refuses_start(tmp_path: Path) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        with pytest.raises(Refused, match="empty"):
            runner.start()
        await queue.add(item("a"))
        commands.busy = True
        with pytest.raises(Refused, match="started directly"):
            runner.start()
        commands.busy = False
        await runner.set_loop(True)
        task = runner.start()
        for n in range(1, 4):
            await submitted(commands, n)
            commands.finish()
        await submitted(commands, 4)
        await runner.request_stop()
        commands.finish()
        await task
        assert len(queue.history) == 4 and len(queue.items) == 1
        uids = [r.item.uid for r in queue.history] + [queue.items[0].uid]
        assert len(set(uids)) == 5  # each round is a new item

    run(tmp_path, body)


def test_pause_shows_in_the_queue_state(tmp_path: Path) -> None:
    async def body(
        queue: PlanQueue, runner: QueueRunner, commands: ScriptedCommands, _: Any
    ) -> None:
        await queue.add(item("a"))
        task = runner.start()
        await submitted(commands, 1)
        await runner.observe(StateChanged("paused", "pausing"))
        assert runner.state == QueueState.PAUSED
        await runner.observe(StateChanged("running", "paused"))
        assert runner.state == QueueState.RUNNING
        commands.finish(ExitStatus.ABORT, "aborted on request")
        await task
        assert queue.history[0].state == ItemState.ABORT and runner.failed

    run(tmp_path, body)
