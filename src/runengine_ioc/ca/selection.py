"""Plan selection PVs: which plan, with which arguments and metadata, and what is on offer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from caproto import ChannelType

from ..engine.catalog import RegistryView
from ..engine.json_text import parse_json
from ..engine.metadata import validate_metadata
from ..engine.registry import ArgumentError
from .common import NAME_LIST_LENGTH, as_text, long_string, pv, refusals_to_status
from .context import IOCGroup


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse a JSON object typed by an operator; '' means {}.

    ``NaN`` and ``Infinity`` are refused: Python's json reads them, but they are not JSON, and
    a start document holding one could not be saved by a strict writer.
    """
    if not text.strip():
        return {}
    value = parse_json(text, what)
    if not isinstance(value, dict):
        raise ArgumentError(f"{what} must be a JSON object {{...}}, not {type(value).__name__}")
    return value


def _name_list(name: str, doc: str) -> Any:
    return pv(
        name,
        doc,
        value=[""],
        dtype=ChannelType.STRING,
        max_length=NAME_LIST_LENGTH,
        record="waveform",
        read_only=True,
    )


class SelectionGroup(IOCGroup):
    """PlanName, PlanArgs and Metadata are checked as they are put; Start checks them again."""

    plan_name = pv(
        "PlanName", "Plan to run on Start", value="", dtype=ChannelType.STRING, record="stringout"
    )
    plan_args = long_string("PlanArgs", "Plan keyword arguments (JSON)", value="{}")
    metadata = long_string("Metadata", "Extra start-document metadata (JSON)", value="{}")
    plan_list = _name_list("PlanList", "Plans that PlanName accepts")
    device_list = _name_list("DeviceList", "Devices that PlanArgs may name")
    plan_doc = long_string("PlanDoc", "Summary of the selected plan", read_only=True)

    @property
    def registry(self) -> RegistryView:
        return self.context.registry

    async def publish_names(self, plans: Sequence[str], devices: Sequence[str]) -> None:
        await self.plan_list.write(list(plans)[:NAME_LIST_LENGTH] or [""])
        await self.device_list.write(list(devices)[:NAME_LIST_LENGTH] or [""])

    def selection(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The plan, arguments and metadata that Start would run now."""
        return (
            self.plan_name.value,
            parse_json_object(self.plan_args.value, "PlanArgs"),
            parse_json_object(self.metadata.value, "Metadata"),
        )

    @plan_name.putter  # type: ignore[no-redef]
    @refusals_to_status("PlanName")
    async def plan_name(self, instance: Any, value: Any) -> str:
        name = as_text(value).strip()
        self.registry.check_plan_name(name)
        await self.plan_doc.write(self.registry.plan_summary(name))
        await self.context.status.say(f"plan selected: {name}")
        return name

    @plan_args.putter  # type: ignore[no-redef]
    @refusals_to_status("PlanArgs")
    async def plan_args(self, instance: Any, value: Any) -> str:
        value = as_text(value)
        arguments = parse_json_object(value, "PlanArgs")
        plan = self.plan_name.value
        if plan:
            await self.registry.validate(plan, arguments)
            await self.context.status.say(f"arguments accepted for {plan}")
        else:
            await self.context.status.say("arguments stored; no plan selected yet")
        return value

    @metadata.putter  # type: ignore[no-redef]
    @refusals_to_status("Metadata")
    async def metadata(self, instance: Any, value: Any) -> str:
        value = as_text(value)
        validate_metadata(parse_json_object(value, "Metadata"), self.registry.metadata_keys)
        return value
