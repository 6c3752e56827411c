"""Scripted Commands for the queue runner's tests: plans end when the test says.

They keep the worker's rules for a plan handed over ahead of its turn
(:meth:`~runengine_ioc.engine.worker.RunEngineWorker.submit_after`): it starts at the end of
the current plan only if that one succeeded on its own, and a withdrawal succeeds only before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from ophyd.sim import hw

from runengine_ioc.engine.events import ExitStatus, PlanFinished, Refused
from runengine_ioc.engine.registry import Registry
from runengine_ioc.plans import DEFAULT_PLANS
from runengine_ioc.queue.items import Item
from runengine_ioc.queue.plan_queue import PlanQueue
from runengine_ioc.queue.runner import QueueRunner
from runengine_ioc.queue.store import QUEUE_DB, QueueStore
from tests.polling import async_wait_until


class ScriptedCommands:
    """Commands whose plans end when the test says, with the exit status it says."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.futures: list[asyncio.Future[PlanFinished]] = []
        self.handed_over: list[str] = []  # queue item uids of plans started by a hand-over
        self.handed: list[tuple[str, dict[str, Any], asyncio.Future[PlanFinished]]] = []
        self.busy = False
        self.state = "idle"

    async def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished]:
        if self.busy:
            raise Refused("busy")
        self.registry.validate(plan_name, arguments)  # as the worker does
        self.busy = True
        self.submitted.append((plan_name, dict(metadata)))
        future: asyncio.Future[PlanFinished] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    async def submit_next(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished] | None:
        if not self.busy:
            return None
        self.registry.validate(plan_name, arguments)
        future: asyncio.Future[PlanFinished] = asyncio.get_running_loop().create_future()
        self.handed.append((plan_name, dict(metadata), future))
        return future

    async def cancel_next(self) -> None:
        for _, _, future in self.handed:
            future.cancel()
        self.handed = []

    def finish(
        self, status: ExitStatus = ExitStatus.SUCCESS, message: str = "done", stopped: bool = False
    ) -> PlanFinished:
        """End the current plan; the first plan handed over starts at once if this one
        succeeded on its own (``stopped``: a Stop ended it, which bluesky calls a success);
        else every plan handed over is dropped."""
        n = len(self.futures)
        chained = bool(self.handed) and status == ExitStatus.SUCCESS and not stopped
        followed_by = n + 1 if chained else None
        if chained:
            plan_name, metadata, future = self.handed.pop(0)
            self.submitted.append((plan_name, metadata))
            self.futures.append(future)
            self.handed_over.append(metadata["queue_item_uid"])
        else:
            self.busy = False
            for _, _, future in self.handed:
                future.cancel()  # dropped: they never start
            self.handed = []
        event = PlanFinished(n, "count", status, message, (f"run{n}",), followed_by=followed_by)
        self.futures[n - 1].set_result(event)
        return event  # for the runner's observe, which the IOC calls before the future resolves

    async def pause(self, defer: bool = False) -> None: ...

    async def resume(self) -> None: ...


def item(uid: str, num: Any = 1) -> Item:
    return Item(uid, "count", {"detectors": ["det"], "num": num}, {}, "me", "here", 0.0)


def run(tmp_path: Path, body: Callable[..., Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        queue = PlanQueue(QueueStore(tmp_path / QUEUE_DB))
        commands = ScriptedCommands(Registry([hw().det], DEFAULT_PLANS))
        said: list[str] = []

        async def say(text: str) -> None:
            said.append(text)

        async def changed() -> None: ...

        runner = QueueRunner(queue, commands, say, changed)  # type: ignore[arg-type]
        try:
            await body(queue, runner, commands, said)
        finally:
            runner.shutting_down()
            await runner.close()
            queue.close()

    asyncio.run(main())


async def submitted(commands: ScriptedCommands, count: int) -> None:
    await async_wait_until(lambda: len(commands.submitted) >= count, 5, what=f"{count} plans")
