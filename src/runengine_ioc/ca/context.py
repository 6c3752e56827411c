"""How the PV groups reach each other: one small, typed context instead of ``self.parent``.

caproto builds the groups of a :class:`~caproto.server.PVGroup` itself, so the context is
handed to each group by :class:`~.server.RunEngineIOC` once they all exist (and to each plan
form as it is built). A group only knows the context's fields, never the IOC's class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from caproto.server import PVGroup

from ..engine.catalog import RegistryView, ServedProfile
from ..engine.commands import Commands


class StatusLine(Protocol):
    """The Status PV: what happened last, or why a put was refused."""

    async def say(self, text: str) -> None: ...

    async def refuse(self, text: str) -> None: ...


class SelectionSource(Protocol):
    """What PlanName, PlanArgs and Metadata hold now."""

    def selection(self) -> tuple[str, dict[str, Any], dict[str, Any]]: ...


class PlanQueueAccess(Protocol):
    """The plan queue (ca/queue.py), as the other groups use it."""

    def check_direct_run(self) -> None:
        """Raise Refused while the queue runs (a direct Start/Submit would cut in)."""
        ...

    async def queue_plan(self, plan: str, args: dict[str, Any], metadata: dict[str, Any]) -> str:
        """Add a plan to the queue (checked, on disk when this returns); its uid."""
        ...


class BusyIndicator(Protocol):
    """The Start PV, which reads 1 while a plan is in progress (a caproto channel)."""

    async def write(self, value: Any, **kwargs: Any) -> None: ...


@dataclass
class IOCContext:
    """What the PV groups share.

    Attributes
    ----------
    commands
        Runs plans (the bridge): Start, the forms' Starts, Pause, ..., Reload.
    registry
        The plans and devices in service; replaced as a whole on Reload.
    status
        The Status line, for what happened and for refusals.
    selection
        PlanName/PlanArgs/Metadata as Start and the forms read them.
    start
        The Start PV, which the status group sets while a plan is in progress.
    reloader
        Loads the profile anew in a new worker process, ``None`` when there is none.
    apply_setup
        Serves a reloaded profile (new registry, forms rebuilt).
    queue
        The plan queue: a form's Queue button adds to it; Start and Submit ask it whether
        a direct run is allowed now.
    """

    commands: Commands
    registry: RegistryView
    status: StatusLine
    selection: SelectionSource
    start: BusyIndicator
    reloader: Callable[[], Awaitable[ServedProfile]] | None
    apply_setup: Callable[[ServedProfile], Awaitable[None]]
    queue: PlanQueueAccess | None = None


class IOCGroup(PVGroup):
    """A PV group of the IOC; it reaches the rest of the IOC through :attr:`context` only."""

    context: IOCContext
