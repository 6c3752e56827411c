"""Control PVs: Start (busy semantics), Pause, PauseDeferred, Resume, Stop, Abort, Halt."""

from __future__ import annotations

import asyncio
from typing import Any

from caproto import SkipWrite

from ..engine.commands import Commands
from ..engine.registry import ArgumentError
from .common import clear_put_alarm, command_bo, is_on, refusals_to_status
from .context import IOCGroup


class ControlGroup(IOCGroup):
    """Puts here become commands to the bridge; a refusal fails the put and says why."""

    start = command_bo("Start", "Run PlanName; 1 until it ends", "Start")
    pause = command_bo("Pause", "Pause now (rewind to checkpoint)", "Pause")
    pause_deferred = command_bo("PauseDeferred", "Pause at next checkpoint", "Pause")
    resume = command_bo("Resume", "Resume a paused plan", "Resume")
    stop = command_bo("Stop", "Stop plan (cleanup, success)", "Stop")
    abort = command_bo("Abort", "Abort plan (cleanup, abort)", "Abort")
    halt = command_bo("Halt", "Halt plan (no cleanup)", "Halt")

    def urgent_channels(self) -> list[Any]:
        """Start reads 1 while a plan is in progress: a client must see it change at once."""
        return [self.start]

    @property
    def bridge(self) -> Commands:
        return self.context.commands

    @start.putter  # type: ignore[no-redef]
    @refusals_to_status("Start")
    async def start(self, instance: Any, value: Any) -> None:
        if not is_on(instance, value):
            raise SkipWrite()  # Start reads 1 while busy; putting 0 changes nothing
        if self.context.queue is not None:  # refused while the queue runs
            self.context.queue.check_direct_run()
        plan_name, arguments, metadata = self.context.selection.selection()
        if not plan_name:
            raise ArgumentError("no plan selected: put PlanName first")
        finished = await self.bridge.submit(plan_name, arguments, metadata)
        await clear_put_alarm(instance)
        # The plan runs on regardless of this put: a client that disconnects cancels only
        # its own wait. Start's value is published with the plan's events, not here.
        await asyncio.shield(finished)
        raise SkipWrite()

    @pause.putter  # type: ignore[no-redef]
    @refusals_to_status("Pause")
    async def pause(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.bridge.pause(defer=False)
        return 0

    @pause_deferred.putter  # type: ignore[no-redef]
    @refusals_to_status("PauseDeferred")
    async def pause_deferred(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.bridge.pause(defer=True)
        return 0

    @resume.putter  # type: ignore[no-redef]
    @refusals_to_status("Resume")
    async def resume(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.bridge.resume()
        return 0

    # Stop, Abort and Halt: a put with callback completes once the plan it interrupted has
    # ended. The bridge binds that plan when the interrupt acts, so a Start that lands before
    # wait_current_plan() is never waited for. A Halt ends the plan within the halt timeout.
    @stop.putter  # type: ignore[no-redef]
    @refusals_to_status("Stop")
    async def stop(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.bridge.stop()
            await self.bridge.wait_current_plan()
        return 0

    @abort.putter  # type: ignore[no-redef]
    @refusals_to_status("Abort")
    async def abort(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.bridge.abort("Abort PV")
            await self.bridge.wait_current_plan()
        return 0

    @halt.putter  # type: ignore[no-redef]
    @refusals_to_status("Halt")
    async def halt(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.bridge.halt()
            await self.bridge.wait_current_plan()
        return 0
