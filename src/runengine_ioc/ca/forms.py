"""Plan forms: one PV per parameter of every plan, generated from its signature.

``<prefix><plan>:<parameter>`` holds a value typed from the annotation (ao, longout, bo,
stringout, mbbo, waveforms), checked as it is put; ``<plan>:Start`` runs the plan with the
form's values (busy semantics, like the global Start); ``<plan>:Doc``, ``<plan>:Schema`` and
``<plan>:Args`` describe it. Capitalised suffixes are the IOC's, so they never clash with a
parameter. A required parameter that has not been put yet is in INVALID/UDF alarm.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from caproto import AlarmSeverity, AlarmStatus, ChannelType, SkipWrite
from caproto.server import PVGroup

from ..engine.catalog import RegistryView
from ..engine.registry import ArgumentError, ParameterInfo
from .common import (
    as_text,
    clear_put_alarm,
    command_bo,
    is_on,
    long_string,
    pv,
    refusals_to_status,
)
from .context import IOCContext, IOCGroup
from .limits import serve_limits

#: Longest enum string Channel Access carries (mbbo states).
ENUM_STRING_LENGTH = 25
#: Most states an mbbo has.
MAX_ENUM_STATES = 16
#: Room in number-list waveforms (8 kB of doubles: within the default CA array size).
NUMBER_LIST_LENGTH = 1000
#: Room for the (device-heavy) JSON schema of a plan.
SCHEMA_LENGTH = 16000


def _fits_enum(choices: tuple[str, ...]) -> bool:
    return 0 < len(choices) <= MAX_ENUM_STATES and all(
        len(c) <= ENUM_STRING_LENGTH for c in choices
    )


def _device_choices(info: ParameterInfo) -> tuple[str, ...]:
    """The drop-down of a device parameter: "" first where no device is chosen yet."""
    if info.required or info.optional or info.default is None:
        return ("", *info.choices)
    return info.choices


class FieldCodec:
    """How one parameter travels: the pvproperty that holds it, and PV value -> argument."""

    def __init__(self, info: ParameterInfo) -> None:
        self.info = info

    def pvproperty(self, putter: Callable[..., Any]) -> Any:
        info = self.info
        doc = (info.doc or info.name)[:40]
        common: dict[str, Any] = {"put": putter}
        kind = info.kind
        default = info.default
        if kind in ("float", "int"):
            numeric: dict[str, Any] = {"units": info.units}  # limits: initialize()
            if kind == "float":
                value = float(default) if isinstance(default, int | float) else 0.0
                return pv(
                    info.name, doc, value=value, record="ao", precision=4, **numeric, **common
                )
            integer = int(default) if isinstance(default, int) else 0
            return pv(info.name, doc, value=integer, record="longout", **numeric, **common)
        if kind == "bool":
            return pv(
                info.name,
                doc,
                value="True" if default else "False",
                dtype=ChannelType.ENUM,
                enum_strings=("False", "True"),
                record="bo",
                **common,
            )
        if kind in ("choice", "device") and _fits_enum(self.choices()):
            choices = self.choices()
            state = str(default) if default is not None and str(default) in choices else choices[0]
            return pv(
                info.name,
                doc,
                value=state,
                dtype=ChannelType.ENUM,
                enum_strings=choices,
                record="mbbo",
                **common,
            )
        if kind in ("str", "choice", "device"):
            word = "" if default is None else str(default)
            return pv(
                info.name,
                doc,
                value=word[:39],
                dtype=ChannelType.STRING,
                record="stringout",
                **common,
            )
        if kind in ("floats", "ints"):
            dtype = float if kind == "floats" else int
            values = [dtype(v) for v in default] if isinstance(default, list | tuple) else []
            return pv(
                info.name,
                doc,
                value=values,
                dtype=dtype,
                max_length=NUMBER_LIST_LENGTH,
                record="waveform",
                **common,
            )
        if kind == "devices":
            text = " ".join(default) if isinstance(default, list | tuple) else ""
            return long_string(info.name, doc, value=text, put=putter)
        text = "" if default is None else json.dumps(default)
        return long_string(info.name, doc, value=text, put=putter)

    def choices(self) -> tuple[str, ...]:
        return _device_choices(self.info) if self.info.kind == "device" else self.info.choices

    def argument(self, value: Any) -> Any:
        """The plan argument for a PV value (ArgumentError if it cannot be one)."""
        kind = self.info.kind
        if kind == "bool":
            return value in ("True", 1, True)
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
        if kind in ("floats", "ints"):
            return [float(v) if kind == "floats" else int(v) for v in value]
        if kind == "choice":
            return dict(zip(self.info.choices, self.info.choice_values, strict=True)).get(
                value, value
            )
        if kind == "device":
            return as_text(value).strip() or None
        if kind == "devices":
            text = as_text(value).strip()
            return self._json(text) if text.startswith("[") else text
        if kind == "str":
            return as_text(value)
        text = as_text(value)
        return self._json(text) if text.strip() else None

    def _json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArgumentError(
                f"argument {self.info.name!r}: not valid JSON: {exc.msg} at character {exc.pos}"
            ) from None


class PlanForm(IOCGroup):
    """The form of one plan; subclassed per plan with one pvproperty per parameter."""

    plan_name: str = ""
    codecs: dict[str, FieldCodec] = {}

    form_start = command_bo("Start", "Run this plan with the form", "Start")
    form_queue = command_bo("Queue", "Add this plan to the queue", "Queue")
    form_doc = long_string("Doc", "What this plan does", read_only=True)
    form_schema = long_string(
        "Schema", "JSON schema of the parameters", read_only=True, length=SCHEMA_LENGTH
    )
    form_args = long_string("Args", "Arguments Start would use (JSON)", read_only=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.given = {name for name, codec in self.codecs.items() if not codec.info.required}
        self.retired = False

    @property
    def registry(self) -> RegistryView:
        return self.context.registry

    def channel(self, parameter: str) -> Any:
        return getattr(self, f"param_{parameter}")

    def arguments(self, **pending: Any) -> dict[str, Any]:
        """The arguments the form holds: every parameter put so far or defaulted."""
        return {
            name: pending[name] if name in pending else codec.argument(self.channel(name).value)
            for name, codec in self.codecs.items()
            if name in self.given or name in pending
        }

    async def initialize(self) -> None:
        """Publish Doc/Schema/Args, drive limits and units; flag unset required fields."""
        await self.form_doc.write(self.registry.plan_summary(self.plan_name)[:4000])
        schema = json.dumps(self.registry.json_schema(self.plan_name), separators=(",", ":"))
        await self.form_schema.write(schema[: SCHEMA_LENGTH - 1])
        for name, codec in self.codecs.items():
            channel = self.channel(name)
            fields = getattr(channel, "field_inst", None)
            if codec.info.kind in ("float", "int"):  # the limits clients read, DRVL/DRVH
                await serve_limits(channel, codec.info.low, codec.info.high)
            egu = getattr(fields, "engineering_units", None)
            if egu is not None and codec.info.units:
                await egu.write(codec.info.units)
            if name not in self.given:
                await channel.alarm.write(
                    status=AlarmStatus.SOFT, severity=AlarmSeverity.INVALID_ALARM
                )
        await self._publish_args()

    async def _publish_args(self, **pending: Any) -> None:
        try:
            text = json.dumps(self.arguments(**pending))
        except (ArgumentError, TypeError, ValueError):
            text = ""
        await self.form_args.write(text[:4000])

    def _check_open(self) -> None:
        if self.retired:
            raise ArgumentError(f"plan {self.plan_name!r} was removed by Reload; form retired")

    async def put_parameter(self, name: str, value: Any) -> Any:
        self._check_open()
        codec = self.codecs[name]
        argument = codec.argument(value)
        if argument is None and codec.info.kind in ("device", "json") and codec.info.required:
            raise ArgumentError(f"{self.plan_name}: argument {name!r}: a value is required")
        if argument is not None or not codec.info.optional:
            # with the form's other values: a grid's size is num1 x num2
            await self.registry.check_argument(self.plan_name, name, argument, self.arguments())
        await self._publish_args(**{name: argument})
        self.given.add(name)
        return value

    async def start_plan(self) -> None:
        self._check_open()
        arguments = self.arguments()
        for name, codec in self.codecs.items():
            if codec.info.required and name not in self.given:
                raise ArgumentError(
                    f"{self.plan_name}: missing argument {name!r} (put {self.prefix}{name} first)"
                )
        _, _, metadata = self.context.selection.selection()
        if self.context.queue is not None:  # refused while the queue runs
            self.context.queue.check_direct_run()
        finished = await self.context.commands.submit(self.plan_name, arguments, metadata)
        await clear_put_alarm(self.form_start)
        await asyncio.shield(finished)

    @form_start.putter  # type: ignore[no-redef]
    @refusals_to_status(lambda form: f"{form.plan_name}:Start")
    async def form_start(self, instance: Any, value: Any) -> None:
        if not is_on(instance, value):
            raise SkipWrite()  # reads 1 while busy; putting 0 changes nothing
        await self.start_plan()
        raise SkipWrite()

    @form_queue.putter  # type: ignore[no-redef]
    @refusals_to_status(lambda form: f"{form.plan_name}:Queue")
    async def form_queue(self, instance: Any, value: Any) -> int:
        """Queue the plan with the form's values (the plan queue checks it as Queue:Add)."""
        if is_on(instance, value) and self.context.queue is not None:
            self._check_open()
            for name, codec in self.codecs.items():
                if codec.info.required and name not in self.given:
                    raise ArgumentError(f"{self.plan_name}: missing argument {name!r}")
            _, _, metadata = self.context.selection.selection()
            await self.context.queue.queue_plan(self.plan_name, self.arguments(), metadata)
        return 0


def _parameter_putter(name: str, plan_name: str) -> Callable[..., Any]:
    @refusals_to_status(f"{plan_name}:{name}")
    async def putter(group: PlanForm, instance: Any, value: Any) -> Any:
        return await group.put_parameter(name, value)

    return putter


def form_class(plan_name: str, parameters: tuple[ParameterInfo, ...]) -> type[PlanForm]:
    """A PlanForm subclass with one pvproperty per parameter of ``plan_name``."""
    codecs = {info.name: FieldCodec(info) for info in parameters}
    attrs: dict[str, Any] = {
        "plan_name": plan_name,
        "codecs": codecs,
        "__doc__": f"Form of the plan {plan_name}.",
    }
    for name, codec in codecs.items():
        attrs[f"param_{name}"] = codec.pvproperty(_parameter_putter(name, plan_name))
    return type(f"{plan_name}_form", (PlanForm,), attrs)


def build_form(
    plan_name: str, registry: RegistryView, prefix: str, parent: PVGroup, context: IOCContext
) -> PlanForm:
    cls = form_class(plan_name, registry.parameters(plan_name))
    form = cls(prefix=f"{prefix}{plan_name}:", parent=parent)
    form.context = context
    return form
