"""The two seams of the engine, as Protocols: commands go down, events come up.

:class:`Worker` is what the bridge drives: the RunEngine worker (today a thread of the IOC's
process, :class:`~.worker.RunEngineWorker`). :class:`Commands` is what everything above the
bridge uses to run plans (the Start putters, a plan form, later Submit and the queue runner):
the bridge's coroutines, which never block the event loop. :class:`Publisher` is what the IOC
side gives the bridge to show the events the worker sends up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from .events import Coalesced, PlanFinished, Progress, WorkerEvent


class Worker(Protocol):
    """The RunEngine side, as the bridge sees it (blocking calls, run off the event loop)."""

    @property
    def state(self) -> str: ...

    @property
    def busy(self) -> bool: ...

    def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> int:
        """Validate and queue a plan; its ticket. Raises ``ArgumentError`` or ``Refused``."""
        ...

    def submit_after(
        self,
        ticket: int,
        plan_name: str,
        arguments: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> int | None:
        """Validate a plan to start the moment plan ``ticket`` (the one in progress, or the
        last one handed over) ends in success, with no round trip in between; its ticket, None
        if that plan has already ended."""
        ...

    def cancel_follow_ons(self) -> list[int]:
        """Withdraw every plan handed over that has not started; their tickets."""
        ...

    def request_pause(self, defer: bool = False) -> None: ...

    def resume(self) -> None: ...

    # Stop, Abort and Halt return the ticket of the plan they acted on (None if unknown), so
    # that whoever waits for "the plan I interrupted" never waits for a later one.
    def stop(self) -> int | None: ...

    def abort(self, reason: str = "") -> int | None: ...

    def halt(self) -> int | None:
        """End the plan at once; within a bounded time, whatever the RunEngine does."""
        ...

    def shutdown(self, reason: str = ..., timeout: float = ...) -> bool: ...


class Commands(Protocol):
    """Running plans, from the event loop: what the CA groups (and later the queue) call."""

    @property
    def state(self) -> str: ...

    @property
    def busy(self) -> bool: ...

    async def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished]:
        """Start a plan; the future resolves when it has ended. Refusals raise."""
        ...

    async def submit_next(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished] | None:
        """Hand over a plan to start the moment the current one (or the last one handed over)
        ends in success: the queue's next items. Its future resolves when it has ended, and is
        cancelled if it never starts (a plan before it failed or was stopped, or
        :meth:`cancel_next`). None if no plan is in progress to follow. Refusals raise, as for
        :meth:`submit`."""
        ...

    async def cancel_next(self) -> None:
        """Withdraw every plan handed over that has not started (their futures are
        cancelled); those that have started run on."""
        ...

    async def wait_current_plan(self) -> PlanFinished | None:
        """Wait for the plan this caller's last Stop/Abort/Halt acted on (else the current)."""
        ...

    async def pause(self, defer: bool = False) -> None: ...

    async def resume(self) -> None: ...

    async def stop(self) -> None: ...

    async def abort(self, reason: str = "") -> None: ...

    async def halt(self) -> None: ...


class Publisher(Protocol):
    """What the IOC side provides to show events (implemented by the PV groups)."""

    async def publish_event(self, event: WorkerEvent) -> None: ...

    async def publish_progress(self, progress: Progress | None, now: float) -> None: ...

    async def publish_latest(self, item: Coalesced) -> None:
        """A coalesced record other than Progress (live data, sink health)."""
        ...
