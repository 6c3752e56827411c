"""What the queue holds and remembers: items, their states, and what became of each.

An item is what a client asked to run later: a plan name, its arguments, start-document
metadata, who added it and a uid. Once it has run (or failed to), it becomes a history
:class:`Record`: its outcome, times, scan ids and run uids. Both are plain, immutable and
JSON-friendly, so that the store, the runner and the PVs pass them around without copying
rules.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ..engine.catalog import RegistryView
from ..engine.events import ExitStatus
from ..engine.json_text import parse_plan_request
from ..engine.metadata import validate_metadata
from ..engine.registry import ArgumentError

#: Start-document keys the queue sets itself (which item a run belongs to, who queued it).
QUEUE_METADATA_KEYS = frozenset({"queue_item_uid", "queued_by"})
_UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}$")


class ItemState(str, Enum):
    """What became of an item, in the order the ``Item:State`` mbbi enumerates them."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAIL = "fail"
    ABORT = "abort"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


#: States an item ends in (it is in the history).
FINAL_STATES = frozenset(
    {
        ItemState.SUCCESS,
        ItemState.FAIL,
        ItemState.ABORT,
        ItemState.STOPPED,
        ItemState.INTERRUPTED,
    }
)


def new_uid() -> str:
    """A fresh item uid (uuid4, like bluesky-queueserver's ``item_uid``)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Item:
    """One plan waiting in the queue.

    Attributes
    ----------
    uid
        Unique among all items the store has seen (queued or in the history).
    plan, args, metadata
        What to run: as ``Submit`` takes them.
    user, host
        Who added it, as the Channel Access client claimed (empty when unknown).
    added
        When it was added (Unix time).
    """

    uid: str
    plan: str
    args: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    user: str = ""
    host: str = ""
    added: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The item as ``Queue:Items`` shows it."""
        return {
            "uid": self.uid,
            "plan": self.plan,
            "args": dict(self.args),
            "metadata": dict(self.metadata),
            "user": self.user,
            "host": self.host,
            "added": self.added,
        }

    def run_metadata(self) -> dict[str, Any]:
        """The start-document metadata of its run: its own, plus which item and who queued."""
        return {
            **self.metadata,
            "queue_item_uid": self.uid,
            "queued_by": {"user": self.user, "host": self.host},
        }

    def again(self) -> Item:
        """The same plan as a new item (loop mode puts each finished item back at the end)."""
        return replace(self, uid=new_uid(), added=time.time())


@dataclass(frozen=True)
class Record:
    """An item and what became of it: the running item, or an entry of the history.

    Attributes
    ----------
    item
        The item as it was queued.
    state
        ``running`` while it runs, then one of :data:`FINAL_STATES`.
    started, ended
        Unix times; ``ended`` is 0 while it runs.
    scan_ids, run_uids
        Of the runs (start documents) it opened, in order.
    message
        Why it ended so (the plan's exception, "refused at run: ...", ...).
    """

    item: Item
    state: ItemState
    started: float = 0.0
    ended: float = 0.0
    scan_ids: tuple[int, ...] = ()
    run_uids: tuple[str, ...] = ()
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The entry as ``History`` shows it."""
        item = self.item
        return {
            "uid": item.uid,
            "plan": item.plan,
            "args": dict(item.args),
            "user": item.user,
            "host": item.host,
            "state": self.state.value,
            "scan_ids": list(self.scan_ids),
            "run_uids": list(self.run_uids),
            "started": self.started,
            "ended": self.ended,
            "message": self.message,
        }


def outcome(exit_status: ExitStatus, stopped: bool, interrupted: bool = False) -> ItemState:
    """The final state of an item from its plan's exit status.

    bluesky reports a stopped plan as a success (its cleanup ran); ``stopped`` says whether the
    RunEngine went through ``stopping`` while the item ran, so the history tells them apart.
    ``interrupted``: the worker process ended under it (as an IOC killed under it would).
    """
    if interrupted:
        return ItemState.INTERRUPTED
    if exit_status == ExitStatus.SUCCESS:
        return ItemState.STOPPED if stopped else ItemState.SUCCESS
    if exit_status == ExitStatus.ABORT:
        return ItemState.ABORT
    return ItemState.FAIL


def parse_request(text: str, label: str) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """Plan, arguments, metadata and uid ("" if not given) of a JSON item request.

    The same JSON as ``Submit`` (``{"plan", "args", "metadata"}``), plus an optional ``uid``
    so that a script knows the uid of what it added even when others add at the same time.
    Raises ArgumentError, in words that name ``label`` (the PV).
    """
    plan, arguments, metadata, extras = parse_plan_request(text, label, ("uid",))
    uid = extras.get("uid", "")
    if not isinstance(uid, str) or (uid and not _UID_PATTERN.match(uid)):
        raise ArgumentError(
            f'{label}\'s "uid" must be text of 1-40 letters, digits, "-", "_", "." or ":"'
        )
    return plan, arguments, metadata, uid


async def check_item(
    registry: RegistryView, plan: str, args: Mapping[str, Any], metadata: Any
) -> None:
    """The checks a Submit gets (plan, arguments, metadata), plus the queue's own keys.

    Run at add and again when the item runs: the registry may have been reloaded between.
    """
    registry.check_plan_name(plan)
    await registry.validate(plan, dict(args))
    validate_metadata(metadata, registry.metadata_keys)  # as Submit: the profile's keys too
    clash = sorted(QUEUE_METADATA_KEYS.intersection(metadata))
    if clash:
        raise ArgumentError(f"metadata may not set {', '.join(clash)} (set by the queue)")
