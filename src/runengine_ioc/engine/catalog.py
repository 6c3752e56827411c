"""What the IOC process knows of the plans and devices: a description, and checks by message.

The registry (:mod:`.registry`) holds the profile's plan functions and devices, so it lives in
the worker process. The IOC process serves forms, schemas and names from a plain-data
:class:`RegistryDescription` the worker sends up when it is ready, and asks the worker (through
a :class:`Checker`) to validate arguments, since a plan's annotations may name the profile's own
types. Everything here is picklable data built from JSON-like values only: unpickling it never
imports profile code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .signatures import ArgumentError, ParameterInfo, factor_of

__all__ = [
    "ArgumentError",
    "Checker",
    "LocalChecker",
    "PlanDescription",
    "RegistryDescription",
    "RegistryView",
    "ServedProfile",
    "describe_registry",
]


def _plain(value: Any) -> Any:
    """A JSON-like copy of ``value`` (an Enum as its value, anything else as its text)."""
    if isinstance(value, Enum):
        value = value.value
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError):
        return str(value)


def _plain_parameter(info: ParameterInfo) -> ParameterInfo:
    """A parameter as plain data: a choice's values as the JSON values a client sends (an
    Enum's ``value``), shown as their text; devices' names stay names."""
    values = info.choice_values
    if info.kind == "choice" and not values:
        values = tuple(_plain(choice) for choice in info.choices)
    choices = info.choices
    if info.kind == "choice":
        choices = tuple(v if isinstance(v, str) else json.dumps(v) for v in values)
    return dataclasses.replace(
        info,
        default=_plain(info.default),
        choices=tuple(str(c) for c in choices),
        choice_values=tuple(_plain(v) for v in values),
    )


@dataclass(frozen=True)
class PlanDescription:
    """One plan as the IOC process serves it."""

    name: str
    summary: str
    schema: dict[str, Any]
    parameters: tuple[ParameterInfo, ...]
    factors: tuple[str, ...]  # parameters whose product is the plan's number of points
    factor_defaults: dict[str, int]  # what each factor counts for when not given


@dataclass(frozen=True)
class RegistryDescription:
    """The registry as plain data: names, forms, schemas, device information."""

    plans: dict[str, PlanDescription]
    device_names: tuple[str, ...]
    metadata_keys: frozenset[str]
    max_points: int
    device_info: dict[str, dict[str, Any]] = field(default_factory=dict)


def describe_registry(registry: Any, *, device_info: bool = True) -> RegistryDescription:
    """Describe a :class:`~.registry.Registry` (in the worker process) for the IOC process.

    ``device_info`` reads each device's ``describe()``, which may touch the control system.
    """
    plans = {}
    for name in registry.plan_names:
        factors = registry.point_factors(name)
        plans[name] = PlanDescription(
            name=name,
            summary=registry.plan_summary(name),
            schema=_plain(registry.json_schema(name)),
            parameters=tuple(_plain_parameter(p) for p in registry.parameters(name)),
            factors=tuple(factors),
            factor_defaults=factors,
        )
    return RegistryDescription(
        plans=plans,
        device_names=tuple(registry.device_names),
        metadata_keys=frozenset(registry.metadata_keys),
        max_points=registry.max_points,
        device_info=_plain(registry.device_info()) if device_info else {},
    )


class Checker(Protocol):
    """Validates arguments where the plans are (the worker process); raises ArgumentError."""

    async def validate(self, plan_name: str, arguments: Mapping[str, Any]) -> None: ...

    async def check_argument(
        self, plan_name: str, parameter: str, value: Any, others: Mapping[str, Any]
    ) -> None: ...


class LocalChecker:
    """A :class:`Checker` over a registry in this process (tests, ``runengine-ioc panels``)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    async def validate(self, plan_name: str, arguments: Mapping[str, Any]) -> None:
        self.registry.validate(plan_name, arguments)

    async def check_argument(
        self, plan_name: str, parameter: str, value: Any, others: Mapping[str, Any]
    ) -> None:
        self.registry.check_argument(plan_name, parameter, value, others)


class RegistryView:
    """The plans and devices in service, for the IOC process: look-ups here, checks by message.

    The same questions as :class:`~.registry.Registry` asks of its plans, answered from a
    :class:`RegistryDescription`; :meth:`validate` and :meth:`check_argument` are coroutines
    that ask the worker (never blocking the event loop).
    """

    def __init__(self, description: RegistryDescription, checker: Checker) -> None:
        self.description = description
        self.checker = checker
        self.plan_names: tuple[str, ...] = tuple(sorted(description.plans))
        self.device_names = description.device_names
        self.metadata_keys = description.metadata_keys
        self.max_points = description.max_points

    @classmethod
    def local(cls, registry: Any) -> RegistryView:
        """A view of a registry in this process (tests and one-shot commands)."""
        return cls(describe_registry(registry), LocalChecker(registry))

    def _plan(self, name: str) -> PlanDescription:
        plan = self.description.plans.get(name) if isinstance(name, str) else None
        if plan is None:
            known = ", ".join(self.plan_names) or "(none)"
            raise ArgumentError(f"unknown plan {name!r}; known plans: {known}")
        return plan

    def check_plan_name(self, name: str) -> None:
        """Raise ArgumentError unless ``name`` is a plan in service."""
        self._plan(name)

    def plan_summary(self, name: str) -> str:
        return self._plan(name).summary

    def json_schema(self, name: str) -> dict[str, Any]:
        return json.loads(json.dumps(self._plan(name).schema))  # the caller's own copy

    def parameters(self, name: str) -> tuple[ParameterInfo, ...]:
        return self._plan(name).parameters

    def device_info(self) -> dict[str, dict[str, Any]]:
        return self.description.device_info

    def points(self, plan_name: str, arguments: Mapping[str, Any]) -> int | None:
        """How many points the plan takes with these arguments; None if it does not say."""
        plan = self._plan(plan_name)
        if not plan.factors:
            return None
        total = 1
        for name in plan.factors:
            total *= factor_of(arguments[name]) if name in arguments else plan.factor_defaults[name]
        return total

    async def validate(self, plan_name: str, arguments: Mapping[str, Any]) -> None:
        """Check a plan's arguments where the plan is; ArgumentError (one line) if wrong."""
        self._plan(plan_name)
        await self.checker.validate(plan_name, arguments)

    async def check_argument(
        self,
        plan_name: str,
        parameter: str,
        value: Any,
        others: Mapping[str, Any] | None = None,
    ) -> None:
        """Check one argument as a form field is put; ArgumentError if wrong."""
        self._plan(plan_name)
        await self.checker.check_argument(plan_name, parameter, value, dict(others or {}))


@dataclass
class ServedProfile:
    """What the IOC process serves of a loaded profile (plain data but for ``on_applied``)."""

    registry: RegistryView
    description: str
    access_policy: Mapping[str, Any] | None = None
    access_groups: dict[str, str] = field(default_factory=dict)
    on_applied: Any = None  # an async callable: swap to the worker that loaded this profile
