"""The IOC's set-up: which profile is loaded, what its devices are, and Reload."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..engine.catalog import RegistryView
from ..engine.events import Refused
from ..engine.profile import ProfileError
from .common import clip_text, command_bo, is_on, long_string, refusals_to_status
from .context import IOCGroup

#: DeviceInfo stays within the default EPICS_CA_MAX_ARRAY_BYTES of clients (16 kB).
DEVICE_INFO_LENGTH = 16000


class SetupGroup(IOCGroup):
    """Profile, DeviceInfo and Reload."""

    profile = long_string("Profile", "Loaded profile (and happi database)", read_only=True)
    device_info = long_string(
        "DeviceInfo",
        "Devices: kind, fields, units, limits",
        value="{}",
        read_only=True,
        length=DEVICE_INFO_LENGTH,
    )
    reload = command_bo("Reload", "Re-read profile and plans (idle)", "Reload")

    async def publish_setup(self, description: str, registry: RegistryView) -> None:
        await self.profile.write(description[:4000])
        info = await asyncio.to_thread(registry.device_info)
        text = json.dumps(info, separators=(",", ":"))
        if len(text) >= DEVICE_INFO_LENGTH:
            brief = {name: {"kind": entry["kind"]} for name, entry in info.items()}
            text = json.dumps({"truncated": True, "devices": brief}, separators=(",", ":"))
        await self.device_info.write(clip_text(text, DEVICE_INFO_LENGTH - 1))

    @reload.putter  # type: ignore[no-redef]
    @refusals_to_status("Reload")
    async def reload(self, instance: Any, value: Any) -> int:
        if not is_on(instance, value):
            return 0
        context = self.context
        if context.reloader is None:
            raise Refused("this IOC was started without a profile to reload")
        if context.commands.busy:
            raise Refused("a plan is in progress; Reload only while idle")
        await context.status.say("reloading the profile and the plan library...")
        try:  # in a new worker process: whatever the profile does, the one in service stays
            setup = await context.reloader()
        except ProfileError as exc:
            raise Refused(f"{exc}; the previous profile stays in service") from exc
        await context.apply_setup(setup)
        return 0
