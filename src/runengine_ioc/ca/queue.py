"""The plan queue over Channel Access: Queue:*, History and Item:* PVs.

Adding, moving and removing items, starting and stopping the queue, and reading what ran
(:mod:`runengine_ioc.queue` does the work; this module only turns puts into its calls and
its state into PVs). Every put that changes the queue completes once the change is on disk,
and the PVs show it before the put completes, so a client that reads after ``caput -c`` sees
what it did.

caproto passes a putter no client identity; it does pass the client's user and host to each
channel's ``auth_write`` (``caproto.server.common``, the write handler). :func:`identify_putters`
wraps ``auth_write`` of the queue's PVs to keep them in a context variable for the write's
duration, so that each item records who added it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from caproto import AlarmSeverity, ChannelType, SkipWrite

from ..access.policy import PolicyRefusal, devices_named
from ..engine.events import Refused, WorkerEvent
from ..engine.registry import ArgumentError
from ..queue.items import FINAL_STATES, Item, ItemState, Record, check_item, new_uid, parse_request
from ..queue.plan_queue import PlanQueue
from ..queue.runner import OnFailure, QueueRunner, QueueState
from .common import (
    as_text,
    clear_put_alarm,
    command_bo,
    is_on,
    long_string,
    pv,
    refusals_to_status,
    write_alarmed,
)
from .context import IOCGroup
from .gate import GatedCommands, current_caller

#: Room for Queue:Items and History (within Channel Access's default 16 kB array limit).
LIST_LENGTH = 16000
#: JSON texts of items and history entries kept for the lists (forgotten all at once past it)
JSON_CACHE_SIZE = 4096

#: (user, host) of the client whose write is being handled (see identify_putters).
_PUTTER: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "runengine_ioc_queue_putter", default=("", "")
)


def identify_putters(pvdb: Mapping[str, Any], prefix: str) -> None:
    """Keep the client's user and host while the queue's PVs are written.

    Call it after any other ``auth_write`` wrapper is installed (the gate's), so this one
    runs outside it and every putter under it sees the identity.
    """
    for name, channel in pvdb.items():
        label = name.removeprefix(prefix)
        if "." in label or not (label.startswith("Queue:") or label.endswith(":Queue")):
            continue
        original = channel.auth_write

        async def auth_write(
            hostname: Any, username: Any, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            token = _PUTTER.set((str(username or ""), str(hostname or "")))
            try:
                return await _original(hostname, username, *args, **kwargs)
            finally:
                _PUTTER.reset(token)

        channel.auth_write = auth_write


def _json_list(
    entries: Iterable[str], limit: int = LIST_LENGTH - 1, *, reverse: bool = False
) -> str:
    """A JSON list of as many entries (JSON texts) as fit in ``limit`` bytes (``reverse``:
    the entries come newest first, the list shows them oldest first)."""
    parts: list[str] = []
    size = 2
    for text in entries:
        size += len(text.encode("utf-8")) + 1
        if size > limit:
            break
        parts.append(text)
    if reverse:
        parts.reverse()
    return "[" + ",".join(parts) + "]"


def _move_request(text: str) -> tuple[str, int]:
    """``{"item": uid-or-position, "to": position}`` or ``"<uid-or-position> <position>"``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text.split()
    if isinstance(value, dict) and set(value) == {"item", "to"}:
        item, to = value["item"], value["to"]
    elif isinstance(value, list) and len(value) == 2:
        item, to = value
    else:
        raise ArgumentError(
            'Queue:Move takes {"item": <uid or position>, "to": <position>} or "<item> <to>"'
        )
    try:
        return str(item), int(to)
    except (TypeError, ValueError):
        raise ArgumentError(f"Queue:Move: {to!r} is not a position (0 first, -1 last)") from None


def _bo(name: str, doc: str, off: str = "Off", on: str = "On") -> Any:
    return pv(name, doc, value=0, dtype=ChannelType.ENUM, enum_strings=(off, on), record="bo")


class QueueGroup(IOCGroup):
    """The queue's PVs; :meth:`attach` gives it the queue once the IOC's context exists."""

    pv_add = long_string("Queue:Add", "Queue a plan given as JSON", value="")
    pv_add_selection = command_bo("Queue:AddSelection", "Queue PlanName/PlanArgs/Metadata", "Add")
    pv_added = pv(
        "Queue:Added", "Uid of the last item added", value="", dtype=ChannelType.STRING,
        record="stringin", read_only=True,
    )  # fmt: skip
    pv_start = command_bo("Queue:Start", "Run the queue; 1 until it stops", "Start")
    pv_stop = command_bo("Queue:Stop", "Stop after the current item", "Stop")
    pv_pause = command_bo("Queue:Pause", "Pause the running item", "Pause")
    pv_resume = command_bo("Queue:Resume", "Resume the paused item", "Resume")
    pv_clear = command_bo("Queue:Clear", "Remove every queued item", "Clear")
    pv_remove = pv(
        "Queue:Remove", "Remove an item (uid or position)", value="", dtype=ChannelType.STRING,
        record="stringout",
    )  # fmt: skip
    pv_move = long_string("Queue:Move", "Move an item (JSON item, to)", value="")
    pv_run_now = long_string("Queue:RunNow", "Run an item next (uid or JSON)", value="")
    pv_autostart = _bo("Queue:Autostart", "Start when items are added")
    pv_loop = _bo("Queue:Loop", "Put each item back at the end")
    pv_on_failure = pv(
        "Queue:OnFailure", "On a failed item: stop or continue", value=OnFailure.STOP.value,
        dtype=ChannelType.ENUM, enum_strings=tuple(p.value for p in OnFailure), record="mbbo",
    )  # fmt: skip
    pv_items = long_string("Queue:Items", "Queued items (JSON, in order)", read_only=True,
                        length=LIST_LENGTH, value="[]")  # fmt: skip
    pv_count = pv("Queue:Count", "Items in the queue", value=0, record="longin", read_only=True)
    pv_running = pv(
        "Queue:Running", "Uid of the item running", value="", dtype=ChannelType.STRING,
        record="stringin", read_only=True,
    )  # fmt: skip
    pv_state = pv(
        "Queue:State", "Queue state", value=QueueState.IDLE.value, dtype=ChannelType.ENUM,
        enum_strings=tuple(s.value for s in QueueState), record="mbbi", read_only=True,
    )  # fmt: skip
    pv_history = long_string("History", "Last items run (JSON)", read_only=True,
                          length=LIST_LENGTH, value="[]")  # fmt: skip
    pv_history_count = pv(
        "History:Count", "Entries in the history", value=0, record="longin", read_only=True
    )
    pv_history_clear = command_bo("History:Clear", "Forget the history", "Clear")
    pv_item_uid = pv(
        "Item:Uid", "Uid of the item to look up", value="", dtype=ChannelType.STRING,
        record="stringout",
    )  # fmt: skip
    pv_item_state = pv(
        "Item:State", "State of the item looked up", value=ItemState.UNKNOWN.value,
        dtype=ChannelType.ENUM, enum_strings=tuple(s.value for s in ItemState), record="mbbi",
        read_only=True,
    )  # fmt: skip
    pv_item_runs = long_string(
        "Item:Runs", "Run uids of the item (JSON)", read_only=True, value="[]"
    )
    pv_item_info = long_string("Item:Info", "The item looked up (JSON)", read_only=True, value="")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: PlanQueue | None = None
        self.runner: QueueRunner | None = None
        self._shown: dict[str, Any] = {}
        self._json_cache: dict[str, str] = {}  # an item's JSON by uid
        self._record_cache: dict[tuple[str, str, float], str] = {}  # a history entry's JSON
        self._selected = ""  # the uid put to Item:Uid
        #: Autostart on at start-up (``--queue-autostart``): a stored queue starts at once.
        self.autostart_at_start = False

    def attach(self, queue: PlanQueue) -> None:
        """Serve this queue (its runner submits through the context's commands)."""
        self.queue = queue
        self.runner = QueueRunner(
            queue,
            self.context.commands,
            self.context.status.say,
            self.publish,
        )

    def _parts(self) -> tuple[PlanQueue, QueueRunner]:
        if self.queue is None or self.runner is None:
            raise RuntimeError("QueueGroup used before attach()")
        return self.queue, self.runner

    # -- for the rest of the IOC ------------------------------------------------------

    def check_direct_run(self) -> None:
        """Refuse a direct Start/Submit while the queue runs (Refused, said in Status)."""
        why = self._parts()[1].direct_run_refusal()
        if why:
            raise Refused(why)

    async def add_item(
        self, plan: str, args: dict[str, Any], metadata: dict[str, Any], uid: str = "",
        *, front: bool = False,
    ) -> Item:  # fmt: skip
        """Check and queue an item from the client whose write is handled; on disk when
        this returns. ArgumentError (said in Status by the putter) if refused."""
        queue, _ = self._parts()
        await check_item(self.context.registry, plan, args, metadata)
        self._check_policy(plan, args)
        user, host = _PUTTER.get()
        item = Item(uid or new_uid(), plan, args, metadata, user, host, time.time())
        await queue.add(item, front=front)
        await self.pv_added.write(item.uid)
        where = "the front" if front else f"position {len(queue.items) - 1}"
        await self.context.status.say(f"queued {plan} ({item.uid}) at {where}")
        return item

    def _check_policy(self, plan: str, args: dict[str, Any]) -> None:
        """The gate's plan policy (``--policy``) for the client adding the item, as at Start:
        the runner submits with no client behind it, so this is where the adder is checked."""
        commands = self.context.commands
        caller = current_caller()
        if not isinstance(commands, GatedCommands) or caller is None:
            return
        policy = commands.gate.policy
        if policy is None:
            return
        try:
            policy.check(caller.client, plan, devices_named(commands.gate.registry(), plan, args))
        except PolicyRefusal as exc:
            raise ArgumentError(str(exc)) from None

    async def queue_plan(self, plan: str, args: dict[str, Any], metadata: dict[str, Any]) -> str:
        """A form's Queue button (IOCContext.queue): queue it; its uid."""
        item = await self.add_item(plan, args, metadata)
        await self.publish()
        await self._parts()[1].maybe_autostart()
        return item.uid

    async def initialize(self) -> None:
        """Publish what the store holds; start the queue if configured to."""
        _, runner = self._parts()
        runner.autostart = self.autostart_at_start
        await self.publish()
        await runner.maybe_autostart()

    async def publish_event(self, event: WorkerEvent) -> None:
        """Every event the IOC publishes. Nothing is published from here: a plan's end is
        on the path from one item to the next (the runner publishes once it submitted)."""
        await self._parts()[1].observe(event)

    async def shutting_down(self) -> None:
        self._parts()[1].shutting_down()

    async def close(self) -> None:
        await self._parts()[1].close()

    # -- publishing -------------------------------------------------------------------

    async def _show(self, channel: Any, key: str, value: Any) -> None:
        if self._shown.get(key) != value:
            self._shown[key] = value
            await channel.write(value)

    async def publish(self) -> None:
        """Every queue PV from the queue's state (unchanged ones are not written)."""
        queue, runner = self._parts()
        await self._show(self.pv_items, "items", _json_list(map(self._item_json, queue.items)))
        await self._show(self.pv_count, "count", len(queue.items))
        running = queue.running.item.uid if queue.running is not None else ""
        await self._show(self.pv_running, "running", running)
        severity = AlarmSeverity.MINOR_ALARM if runner.failed else AlarmSeverity.NO_ALARM
        if self._shown.get("state") != (runner.state, severity):
            self._shown["state"] = (runner.state, severity)
            await write_alarmed(self.pv_state, runner.state.value, severity)
        recent = map(self._record_json, reversed(queue.history))
        await self._show(self.pv_history, "history", _json_list(recent, reverse=True))
        await self._show(self.pv_history_count, "history_count", queue.history_count)
        await self._show(self.pv_autostart, "autostart", "On" if runner.autostart else "Off")
        await self._show(self.pv_loop, "loop", "On" if runner.loop else "Off")
        await self._show(self.pv_on_failure, "on_failure", runner.on_failure.value)
        if self._selected:
            found = queue.find(self._selected)
            if found is not None:
                await self._show_item(found)

    def _item_json(self, item: Item) -> str:
        """An item's JSON, made once per item (the queue is shown again at every change)."""
        text = self._json_cache.get(item.uid)
        if text is None:
            if len(self._json_cache) > JSON_CACHE_SIZE:
                self._json_cache.clear()
            text = self._json_cache[item.uid] = json.dumps(item.as_dict(), separators=(",", ":"))
        return text

    def _record_json(self, record: Record) -> str:
        key = (record.item.uid, record.state.value, record.ended)
        text = self._record_cache.get(key)
        if text is None:
            if len(self._record_cache) > JSON_CACHE_SIZE:
                self._record_cache.clear()
            text = json.dumps(record.as_dict(), separators=(",", ":"))
            self._record_cache[key] = text
        return text

    async def _show_item(self, record: Record | None) -> None:
        state = record.state if record is not None else ItemState.UNKNOWN
        runs = list(record.run_uids) if record is not None else []
        info = record.as_dict() if record is not None else {}
        if record is not None and record.state not in FINAL_STATES:
            info.update(state=record.state.value)
        await self._show(self.pv_item_state, "item_state", state.value)
        await self._show(self.pv_item_runs, "item_runs", json.dumps(runs))
        await self._show(self.pv_item_info, "item_info", json.dumps(info)[: LIST_LENGTH - 1])

    # -- putters ------------------------------------------------------------------------

    @pv_add.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Add")
    async def pv_add(self, instance: Any, value: Any) -> str:
        text = as_text(value)
        plan, args, metadata, uid = parse_request(text, "Queue:Add")
        await self.add_item(plan, args, metadata, uid)
        await self.publish()
        await self._parts()[1].maybe_autostart()
        return text

    @pv_add_selection.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:AddSelection")
    async def pv_add_selection(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            plan, args, metadata = self.context.selection.selection()
            if not plan:
                raise ArgumentError("no plan selected: put PlanName first")
            await self.add_item(plan, args, metadata)
            await self.publish()
            await self._parts()[1].maybe_autostart()
        return 0

    @pv_start.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Start")
    async def pv_start(self, instance: Any, value: Any) -> None:
        if not is_on(instance, value):
            raise SkipWrite()
        _, runner = self._parts()
        task = runner.start()
        await clear_put_alarm(instance)
        await instance.write(1, verify_value=False)
        await self.context.status.say(f"queue started: {len(self._parts()[0].items)} items")
        await self.publish()
        try:
            # a client that disconnects cancels only its own wait
            await asyncio.shield(task)
        finally:
            await instance.write(0, verify_value=False)
        raise SkipWrite()

    @pv_stop.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Stop")
    async def pv_stop(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self._parts()[1].request_stop()
            await self.context.status.say("queue: stopping after the current item")
            await self.publish()
        return 0

    @pv_pause.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Pause")
    async def pv_pause(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            if self._parts()[1].state == QueueState.IDLE:
                raise ArgumentError("the queue is not running (Pause pauses a plan run directly)")
            await self.context.commands.pause()
        return 0

    @pv_resume.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Resume")
    async def pv_resume(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            if self._parts()[1].state != QueueState.PAUSED:
                raise ArgumentError("the queue is not paused")
            await self.context.commands.resume()
        return 0

    @pv_clear.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Clear")
    async def pv_clear(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            count = await self._parts()[0].clear()
            await self.context.status.say(f"queue cleared: {count} items removed")
            await self.publish()
        return 0

    @pv_remove.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Remove")
    async def pv_remove(self, instance: Any, value: Any) -> str:
        item = await self._parts()[0].remove(as_text(value))
        await self.context.status.say(f"removed {item.plan} ({item.uid}) from the queue")
        await self.publish()
        return ""

    @pv_move.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Move")
    async def pv_move(self, instance: Any, value: Any) -> str:
        text = as_text(value)
        selector, to = _move_request(text)
        item = await self._parts()[0].move(selector, to)
        await self.context.status.say(f"moved {item.plan} ({item.uid}) to position {to}")
        await self.publish()
        return text

    @pv_run_now.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:RunNow")
    async def pv_run_now(self, instance: Any, value: Any) -> str:
        queue, runner = self._parts()
        text = as_text(value).strip()
        idle = runner.state == QueueState.IDLE
        if idle and self.context.commands.busy:
            raise ArgumentError("a plan started directly is in progress; RunNow once it ended")
        if text.startswith("{"):
            plan, args, metadata, uid = parse_request(text, "Queue:RunNow")
            await self.add_item(plan, args, metadata, uid, front=True)
        else:
            await queue.move(queue.resolve(text), 0)
        if idle:
            runner.start(single=True)
            await self.context.status.say(f"queue: running {queue.items[0].uid} now")
        await self.publish()
        return text

    @pv_autostart.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Autostart")
    async def pv_autostart(self, instance: Any, value: Any) -> str:
        _, runner = self._parts()
        runner.autostart = is_on(instance, value)
        self._shown["autostart"] = "On" if runner.autostart else "Off"
        await runner.maybe_autostart()
        return self._shown["autostart"]

    @pv_loop.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:Loop")
    async def pv_loop(self, instance: Any, value: Any) -> str:
        _, runner = self._parts()
        await runner.set_loop(is_on(instance, value))
        self._shown["loop"] = "On" if runner.loop else "Off"
        return self._shown["loop"]

    @pv_on_failure.putter  # type: ignore[no-redef]
    @refusals_to_status("Queue:OnFailure")
    async def pv_on_failure(self, instance: Any, value: Any) -> str:
        text = as_text(value).strip()
        if text not in {p.value for p in OnFailure}:
            raise ArgumentError(f"{text!r} is no policy (stop or continue)")
        policy = OnFailure(text)
        await self._parts()[1].set_on_failure(policy)
        self._shown["on_failure"] = policy.value
        return policy.value

    @pv_history_clear.putter  # type: ignore[no-redef]
    @refusals_to_status("History:Clear")
    async def pv_history_clear(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            count = await self._parts()[0].clear_history()
            await self.context.status.say(f"history cleared: {count} entries")
            if self._selected:
                await self._show_item(await self._parts()[0].lookup(self._selected))
            await self.publish()
        return 0

    @pv_item_uid.putter  # type: ignore[no-redef]
    @refusals_to_status("Item:Uid")
    async def pv_item_uid(self, instance: Any, value: Any) -> str:
        uid = as_text(value).strip()
        self._selected = uid
        await self._show_item(await self._parts()[0].lookup(uid) if uid else None)
        return uid
