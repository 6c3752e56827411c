"""The gate's PVs: the baton (Lock:*), the last audit line, and AccessReload.

Taking, releasing or breaking the baton, and reloading the access security file, change
what other clients may write: each sends the new access rights to every connected client
at once (:meth:`.gate.Gate.refresh`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from caproto import ChannelType

from ..access.acf import ACFError
from ..access.audit import AuditRecord
from ..access.baton import BatonRefusal
from ..access.identity import Client
from ..engine.events import Refused
from ..engine.registry import ArgumentError
from .common import clip_text, command_bo, is_on, long_string, pv, refusals_to_status
from .context import IOCGroup
from .gate import Gate, current_caller

#: How often the baton's idle timeout is looked at (seconds).
BATON_POLL = 0.5


class GateGroup(IOCGroup):
    """Lock:Owner/Take/Release/Break, Audit:Last and AccessReload."""

    gate: Gate

    owner = long_string("Lock:Owner", "Who holds the baton (user@host)", read_only=True, length=256)
    take = command_bo("Lock:Take", "Take the baton", "Take")
    release = command_bo("Lock:Release", "Release the baton", "Release")
    break_ = command_bo("Lock:Break", "Break the baton (ADMIN)", "Break")
    audit_last = long_string("Audit:Last", "Last write: who, what, verdict", read_only=True)
    access_reload = command_bo("AccessReload", "Re-read the access security file", "Reload")
    access_mode = pv(
        "Access:Mode",
        "open, or acf <file> in service",
        value="open",
        dtype=ChannelType.STRING,
        read_only=True,
        record="stringin",
    )

    def _client(self) -> Client:
        caller = current_caller()
        if caller is None:
            raise Refused("the baton is taken and released by Channel Access clients")
        return caller.client

    async def changed(self, what: str) -> None:
        """Show the holder, send the new rights, say what happened."""
        holder = self.gate.control.baton.current()
        await self.owner.write(str(holder) if holder else "")
        sent = await self.gate.refresh()
        await self.context.status.say(f"{what} (access rights sent: {sent})")

    @take.putter  # type: ignore[no-redef]
    @refusals_to_status("Lock:Take")
    async def take(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            client = self._client()
            try:
                self.gate.control.baton.take(client)
            except BatonRefusal as exc:
                raise ArgumentError(str(exc)) from None
            await self.changed(f"baton taken by {client}")
        return 0

    @release.putter  # type: ignore[no-redef]
    @refusals_to_status("Lock:Release")
    async def release(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            client = self._client()
            try:
                held = self.gate.control.baton.release(client)
            except BatonRefusal as exc:
                raise ArgumentError(str(exc)) from None
            await self.changed(f"baton released by {client}" if held else "baton was free")
        return 0

    @break_.putter  # type: ignore[no-redef]
    @refusals_to_status("Lock:Break")
    async def break_(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            holder = self.gate.control.baton.break_()
            who = self._client()
            await self.changed(f"baton of {holder} broken by {who}" if holder else "baton was free")
        return 0

    @access_reload.putter  # type: ignore[no-redef]
    @refusals_to_status("AccessReload")
    async def access_reload(self, instance: Any, value: Any) -> int:
        if is_on(instance, value):
            await self.reload_access()
        return 0

    async def reload_access(self) -> None:
        """Re-read the ACF and send the new rights; Refused (old rules kept) if it is broken."""
        try:
            what = await asyncio.to_thread(self.gate.reload)
        except ACFError as exc:
            raise Refused(f"{exc}; the previous access rules stay in service") from None
        await self.changed(what)

    async def show_audit(self, entry: AuditRecord) -> None:
        await self.audit_last.write(clip_text(entry.summary()))

    @owner.startup  # type: ignore[no-redef]
    async def owner(self, instance: Any, async_lib: Any) -> None:
        """Let the baton's idle timeout expire on its own, and show it."""
        baton = self.gate.control.baton
        while True:
            await async_lib.library.sleep(BATON_POLL)
            holder = baton.holder
            if holder is not None and baton.current() is None:
                await self.changed(f"baton of {holder} released: idle for {baton.timeout:g} s")
