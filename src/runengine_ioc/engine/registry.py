"""Plans and devices by name, and validation of plan arguments before anything runs.

Arguments come as JSON-like values, devices by *name*. Rules ("strict-ish JSON"): a string
or a bool is not a number, an int is accepted for a float, a list for any sequence or
tuple; ``Annotated[..., pydantic.Field(...)]`` constraints are honoured. A parameter
annotated with a device type (a runtime-checkable protocol such as ``Readable``, or any
class that is not a data type), a sequence of them, or an Optional/Union of them, takes
device names; a sequence also takes one string of names separated by spaces or commas.

A plan's size (its number of points, from the parameters marked
:class:`~.annotations.PointFactor`) is checked against ``max_points`` with the arguments, so
a plan too big to run is refused before its generator is made; parameter names the IOC uses
for its forms' own PVs (:data:`RESERVED_PARAMETER_NAMES`) are refused at registration.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic.json_schema import GenerateJsonSchema

from .signatures import (
    ArgumentError,
    Param,
    ParameterInfo,
    describe_parameter,
    device_field,
    device_kind,
    factor_of,
    is_point_factor,
    parameter_docs,
    plan_parameters,
    strictify,
    unpartial,
)

__all__ = [
    "DEFAULT_MAX_POINTS",
    "RESERVED_PARAMETER_NAMES",
    "ArgumentError",
    "ParameterInfo",
    "Registry",
    "ValidatedPlan",
    "device_kind",
]

_NAME_RE = re.compile(r"^[^\s,.]+$")

#: Largest plan (in points) an IOC runs unless told otherwise (``--max-points``).
DEFAULT_MAX_POINTS = 1_000_000

#: Names of a plan form's own PVs (``<plan>:Start`` ...): a parameter of the same name would
#: be served on the same PV, so it is refused. The CA side checks its forms against this.
RESERVED_PARAMETER_NAMES = frozenset({"Start", "Queue", "Doc", "Schema", "Args"})


@dataclass(frozen=True)
class ValidatedPlan:
    """A plan and arguments that passed validation.

    ``arguments`` holds only the arguments given (the plan's defaults apply to the rest),
    resolved: device objects for device names, coerced values (``1`` -> ``1.0`` for a
    float). ``raw_arguments`` is a deep copy of the arguments as given.
    """

    name: str
    function: Callable[..., Generator[Any, Any, Any]]
    arguments: Mapping[str, Any]
    raw_arguments: Mapping[str, Any]

    def make_generator(self) -> Generator[Any, Any, Any]:
        """Call the plan with the resolved arguments (nothing runs until it is iterated)."""
        return self.function(**self.arguments)


class _SchemaGenerator(GenerateJsonSchema):
    # leave out a default that is not JSON (a device, say) rather than warn about it
    ignored_warning_kinds = {"skipped-choice", "non-serializable-default"}


@dataclass(frozen=True)
class _PlanSpec:
    name: str
    function: Callable[..., Any]
    model: type[pydantic.BaseModel]
    params: tuple[str, ...]  # exposed parameters, in signature order
    required: frozenset[str]
    field_to_param: Mapping[str, str]  # model field "p0" -> parameter name
    summary: str
    parameters: tuple[ParameterInfo, ...]  # for forms, in signature order
    factors: tuple[str, ...]  # parameters marked PointFactor: their product is the size
    defaults: Mapping[str, Any]  # the defaults of the optional parameters


def _keyed(what: str, items: Mapping[str, Any] | Iterable[Any], attr: str) -> dict[str, Any]:
    pairs = (
        list(items.items())
        if isinstance(items, Mapping)
        else [(getattr(item, attr, None), item) for item in items]
    )
    result: dict[str, Any] = {}
    for name, item in pairs:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"invalid {what} name {name!r} for {item!r}: "
                "a non-empty string without spaces, commas or dots is needed"
            )
        if name in result:
            raise ValueError(f"duplicate {what} name {name!r}")
        result[name] = item
    return result


class Registry:
    """The plans and devices an IOC offers, by name.

    Devices given as an iterable are keyed by ``.name``, plans by ``__name__``. ValueError
    for duplicate or invalid names; TypeError for a plan that is not a generator function,
    takes ``*args`` / ``**kwargs`` / positional-only parameters, has a parameter named like
    one of the form's own PVs (:data:`RESERVED_PARAMETER_NAMES`), or has annotations that
    cannot be validated.

    ``max_points`` bounds the size of a plan (see :meth:`points`); ``metadata_keys`` are the
    profile's own start-document keys, which a client's metadata may not replace.
    """

    def __init__(
        self,
        devices: Mapping[str, Any] | Iterable[Any],
        plans: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]],
        *,
        max_points: int = DEFAULT_MAX_POINTS,
        metadata_keys: Iterable[str] = (),
    ) -> None:
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
        self.max_points = max_points
        self.metadata_keys: frozenset[str] = frozenset(metadata_keys)
        self._devices = _keyed("device", devices, "name")
        self.device_names: tuple[str, ...] = tuple(sorted(self._devices))
        self._plans = {
            name: self._build_spec(name, plan)
            for name, plan in _keyed("plan", plans, "__name__").items()
        }
        self.plan_names: tuple[str, ...] = tuple(sorted(self._plans))

    # -- look-ups ------------------------------------------------------------------------

    def plan(self, name: str) -> Callable[..., Any]:
        """The plan function called ``name``; ArgumentError if there is none."""
        return self._spec(name).function

    def check_plan_name(self, name: str) -> None:
        """Raise ArgumentError unless ``name`` is a registered plan."""
        self._spec(name)

    def _spec(self, name: str) -> _PlanSpec:
        spec = self._plans.get(name) if isinstance(name, str) else None
        if spec is None:
            known = ", ".join(self.plan_names) or "(none)"
            raise ArgumentError(f"unknown plan {name!r}; known plans: {known}")
        return spec

    def device(self, name: str) -> Any:
        """The device called ``name``, or a component of one: ``"motor1.user_setpoint"``.

        Only real ophyd components are followed (names in ``component_names``), never
        arbitrary attributes. ArgumentError if there is no such device.
        """
        if not isinstance(name, str):
            raise ArgumentError(f"expected a device name, got {name!r}")
        top, *parts = name.split(".")
        if top not in self._devices:
            raise ArgumentError(f"unknown device {name!r}")
        obj = self._devices[top]
        path = top
        for part in parts:
            components = getattr(obj, "component_names", None) or ()
            if part not in components:
                raise ArgumentError(f"unknown device {name!r}: {path!r} has no component {part!r}")
            try:
                obj = getattr(obj, part)
            except Exception as exc:
                raise ArgumentError(f"device {name!r} could not be reached: {exc}") from None
            path = f"{path}.{part}"
        return obj

    def device_kind(self, name_or_obj: Any) -> str:
        """``"movable"``, ``"flyable"``, ``"readable"`` or ``"other"`` (first that applies).

        A string is looked up as a device name (ArgumentError if unknown).
        """
        obj = self.device(name_or_obj) if isinstance(name_or_obj, str) else name_or_obj
        return device_kind(obj)

    def device_info(self) -> dict[str, dict[str, Any]]:
        """Each device: its kind, readable fields with units and limits, positioner limits.

        Reads ``describe()``, which may touch the control system: call it off the event loop.
        A device that cannot describe itself says why instead of failing the whole list.
        """
        info: dict[str, dict[str, Any]] = {}
        for name in self.device_names:
            device = self._devices[name]
            entry: dict[str, Any] = {"kind": device_kind(device)}
            try:
                fields = {}
                for key, desc in (device.describe() if hasattr(device, "describe") else {}).items():
                    field: dict[str, Any] = {}
                    if desc.get("units"):
                        field["units"] = desc["units"]
                    low, high = desc.get("lower_ctrl_limit"), desc.get("upper_ctrl_limit")
                    if low is not None and high is not None and low != high:
                        field["limits"] = [low, high]
                    fields[key] = field
                entry["fields"] = fields
                limits = getattr(device, "limits", None)
                if isinstance(limits, tuple) and len(limits) == 2 and limits[0] != limits[1]:
                    entry["limits"] = list(limits)
            except Exception as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
            info[name] = entry
        return info

    def plan_summary(self, name: str) -> str:
        """The first line of the plan's docstring ("" if it has none)."""
        return self._spec(name).summary

    def json_schema(self, name: str) -> dict[str, Any]:
        """The JSON schema of the plan's parameters (an object schema, one property each).

        Device parameters show as a string (or an array of strings) whose ``enum`` lists
        the registered top-level devices of a suitable kind; components given with a dot
        (``"motor1.user_setpoint"``) are accepted too, though not listed.
        """
        spec = self._spec(name)
        schema = spec.model.model_json_schema(schema_generator=_SchemaGenerator)
        schema["title"] = spec.name
        if spec.summary:
            schema["description"] = spec.summary
        return schema

    def parameters(self, name: str) -> tuple[ParameterInfo, ...]:
        """The plan's parameters described for a form (kind, default, choices, limits)."""
        return self._spec(name).parameters

    def point_factors(self, name: str) -> dict[str, int]:
        """The parameters whose product is the plan's size, each with what its default counts
        for (see :meth:`points`), in signature order."""
        spec = self._spec(name)
        return {f: factor_of(spec.defaults.get(f)) for f in spec.factors}

    # -- validation ----------------------------------------------------------------------

    def check_argument(
        self,
        plan_name: str,
        parameter: str,
        value: Any,
        others: Mapping[str, Any] | None = None,
    ) -> None:
        """Check one argument (as a form field is put); ArgumentError if wrong.

        ``others`` are the values the form holds for the other parameters: with them the
        plan's size is checked as it would be at Start (``num2`` of a grid times ``num1``).
        """
        spec = self._spec(plan_name)
        if parameter not in spec.params:
            raise ArgumentError(f"{spec.name}: unknown argument {parameter!r}")
        field = next(f for f, p in spec.field_to_param.items() if p == parameter)
        try:
            spec.model.model_validate({parameter: value})
        except pydantic.ValidationError as exc:
            for error in exc.errors(include_url=False):
                if error["loc"] and error["loc"][0] in (field, parameter):
                    raise ArgumentError(_format_error(spec, error)) from None
        except Exception as exc:
            raise ArgumentError(f"{spec.name}: argument {parameter!r} refused: {exc}") from None
        if parameter in spec.factors:
            self._check_size(spec, {**(others or {}), parameter: value})

    # -- size ----------------------------------------------------------------------------

    def points(self, plan_name: str, arguments: Mapping[str, Any]) -> int | None:
        """How many points the plan takes with these arguments; None if it does not say.

        The product over the parameters marked :class:`~.annotations.PointFactor` (the
        plan's defaults for those not given): an integer counts as itself, a list as its
        length, anything else as 1 (validation refuses it anyway).
        """
        return _points(self._spec(plan_name), arguments)

    def _check_size(self, spec: _PlanSpec, arguments: Mapping[str, Any]) -> None:
        total = _points(spec, arguments)
        if total is None or total <= self.max_points:
            return
        given = {**spec.defaults, **arguments}
        factors = [f for f in spec.factors if factor_of(given.get(f)) != 1] or list(spec.factors)
        how = " x ".join(
            f"{f} {given.get(f)}"
            if isinstance(given.get(f), int)
            else f"{factor_of(given.get(f))} {f}"
            for f in factors
        )
        raise ArgumentError(
            f"{spec.name}: {total} points ({how}) is more than this IOC runs "
            f"(at most {self.max_points} points: --max-points, Profile.max_points)"
        )

    def validate(self, plan_name: str, arguments: Mapping[str, Any]) -> ValidatedPlan:
        """Check ``arguments`` for the plan ``plan_name``; resolve device names.

        Raises
        ------
        ArgumentError
            One line naming the plan and the parameter, e.g.
            ``scan: argument 'num': expected an integer, got 'ten'``.
        """
        spec = self._spec(plan_name)
        try:
            return self._validate(spec, arguments)
        except ArgumentError:
            raise
        except pydantic.ValidationError as exc:
            raise ArgumentError(_format_error(spec, exc.errors(include_url=False)[0])) from None
        except Exception as exc:  # never let anything else escape to the caller
            message = " ".join(f"{spec.name}: arguments refused: {exc!r}".split())
            raise ArgumentError(message) from None

    def _validate(self, spec: _PlanSpec, arguments: Mapping[str, Any]) -> ValidatedPlan:
        if not isinstance(arguments, Mapping):
            raise ArgumentError(
                f"{spec.name}: arguments must be a mapping of parameter names to values, "
                f"got {type(arguments).__name__}"
            )
        params_list = ", ".join(spec.params) or "(none)"
        for key in arguments:
            if not isinstance(key, str):
                raise ArgumentError(f"{spec.name}: argument names must be strings, got {key!r}")
            if key not in spec.params:
                raise ArgumentError(
                    f"{spec.name}: unknown argument {key!r} (parameters: {params_list})"
                )
        for param in spec.params:
            if param in spec.required and param not in arguments:
                raise ArgumentError(f"{spec.name}: missing argument {param!r}")

        instance = spec.model.model_validate(dict(arguments))
        self._check_size(spec, arguments)
        resolved = {
            spec.field_to_param[fname]: getattr(instance, fname)
            for fname in spec.model.model_fields
            if fname in instance.model_fields_set
        }
        try:
            raw = copy.deepcopy(dict(arguments))
        except Exception:
            raw = dict(arguments)
        return ValidatedPlan(spec.name, spec.function, resolved, raw)

    # -- registration --------------------------------------------------------------------

    def _build_spec(self, name: str, plan: Callable[..., Any]) -> _PlanSpec:
        params = plan_parameters(name, plan)  # TypeError for unsupported plans
        for param in params:
            if param.name in RESERVED_PARAMETER_NAMES:
                reserved = ", ".join(sorted(RESERVED_PARAMETER_NAMES))
                raise TypeError(
                    f"plan {name!r}: parameter {param.name!r} has the name of one of its "
                    f"form's own PVs ({reserved}); rename the parameter"
                )
        docs = parameter_docs(plan)
        fields: dict[str, Any] = {}
        field_to_param: dict[str, str] = {}
        required: set[str] = set()
        for index, param in enumerate(params):
            fname = f"p{index}"
            field_to_param[fname] = param.name
            kwargs: dict[str, Any] = {"validation_alias": param.name, "title": param.name}
            if param.name in docs:
                kwargs["description"] = docs[param.name]
            if param.default is inspect.Parameter.empty:
                required.add(param.name)
            else:
                kwargs["default"] = param.default
            if param.device is not None:
                annotation = device_field(param.device, self._devices, self.device)
            else:
                annotation = strictify(param.annotation)
            fields[fname] = (annotation, pydantic.Field(**kwargs))
        try:
            config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
            model = pydantic.create_model(f"{name}_arguments", __config__=config, **fields)
        except Exception as exc:
            raise TypeError(f"plan {name!r}: cannot validate its parameters: {exc}") from exc
        doc = inspect.getdoc(unpartial(plan)) or ""
        summary = (doc.strip().splitlines() or [""])[0].strip()
        names = tuple(p.name for p in params)
        infos = tuple(
            describe_parameter(p, docs.get(p.name, ""), self._candidates(p)) for p in params
        )
        factors = tuple(p.name for p in params if is_point_factor(p.annotation))
        defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        return _PlanSpec(
            name,
            plan,
            model,
            names,
            frozenset(required),
            field_to_param,
            summary,
            infos,
            factors,
            defaults,
        )

    def _candidates(self, param: Param) -> tuple[str, ...]:
        if param.device is None:
            return ()
        types = param.device.types
        return tuple(n for n in self.device_names if isinstance(self._devices[n], types))


def _points(spec: _PlanSpec, arguments: Mapping[str, Any]) -> int | None:
    if not spec.factors:
        return None
    total = 1
    for name in spec.factors:
        value = arguments[name] if name in arguments else spec.defaults.get(name)
        total *= factor_of(value)
    return total


_EXPECTED = {  # pydantic error type -> what we say
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "expected an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "expected a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "expected true or false"),
    **dict.fromkeys(("list_type", "tuple_type", "iterable_type", "set_type"), "expected a list"),
    "sequence_str": "expected a list, not a string",
    "string_type": "expected a string",
    "dict_type": "expected an object (mapping)",
    "finite_number": "expected a finite number",
}


def _format_error(spec: _PlanSpec, error: Any) -> str:
    """A pydantic error as one line: ``plan: argument 'p' (item 2): message``."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    loc = list(error["loc"]) or ["?"]
    items = [str(part) for part in loc[1:] if isinstance(part, int)]
    if ctx.get("item") is not None:  # a device in a list (our own validator)
        items.append(str(ctx["item"]))
    where = f"argument {spec.field_to_param.get(str(loc[0]), loc[0])!r}"
    if items:
        where += f" (item {', '.join(items)})"
    if kind in _EXPECTED:
        message = f"{_EXPECTED[kind]}, got {value!r}"
    elif kind == "device":  # our own, already worded
        message = error["msg"]
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} item(s), got {value!r}"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} item(s), got {value!r}"
    elif kind == "missing":  # an item of a fixed-length list
        message = "missing"
    else:
        message = re.sub(r"^(Value error, |Assertion failed, )", "", error["msg"])
        if message.startswith(("Input should ", "Value should ")):
            message = f"must {message[13:]}, got {value!r}"
    return f"{spec.name}: {where}: {' '.join(message.split())}"  # one line, always
