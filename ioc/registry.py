"""Plans and devices by name, and validation of plan arguments before anything runs.

Arguments come as JSON-like values, devices by *name*. Rules ("strict-ish JSON"): a string
or a bool is not a number, an int is accepted for a float, a list for any sequence or
tuple; ``Annotated[..., pydantic.Field(...)]`` constraints are honoured. A parameter
annotated with a device type (a runtime-checkable protocol such as ``Readable``, or any
class that is not a data type), a sequence of them, or an Optional/Union of them, takes
device names; a sequence also takes one string of names separated by spaces or commas.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import re
from collections import abc
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import pydantic
from bluesky.protocols import Flyable, Movable, Readable
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["ArgumentError", "Registry", "ValidatedPlan", "device_kind"]

_NAME_RE = re.compile(r"^[^\s,.]+$")
_SEPARATORS = re.compile(r"[\s,]+")


class ArgumentError(ValueError):
    """A plan name, device name or plan argument was refused: ``str(err)`` is one line."""


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
    takes ``*args`` / ``**kwargs`` / positional-only parameters, or has annotations that
    cannot be validated.
    """

    def __init__(
        self,
        devices: Mapping[str, Any] | Iterable[Any],
        plans: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]],
    ) -> None:
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

    # -- validation ----------------------------------------------------------------------

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
            raise ArgumentError(_format_validation_error(spec, exc)) from None
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
        params = _plan_parameters(name, plan)  # TypeError for unsupported plans
        docs = _parameter_docs(plan)
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
                annotation = _device_field(param.device, self._devices, self.device)
            else:
                annotation = _strictify(param.annotation)
            fields[fname] = (annotation, pydantic.Field(**kwargs))
        try:
            config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
            model = pydantic.create_model(f"{name}_arguments", __config__=config, **fields)
        except Exception as exc:
            raise TypeError(f"plan {name!r}: cannot validate its parameters: {exc}") from exc
        doc = inspect.getdoc(_unpartial(plan)) or ""
        summary = (doc.strip().splitlines() or [""])[0].strip()
        names = tuple(p.name for p in params)
        return _PlanSpec(name, plan, model, names, frozenset(required), field_to_param, summary)


def device_kind(obj: Any) -> str:
    """``"movable"``, ``"flyable"``, ``"readable"`` or ``"other"`` (first that applies)."""
    kinds = ((Movable, "movable"), (Flyable, "flyable"), (Readable, "readable"))
    return next((word for protocol, word in kinds if isinstance(obj, protocol)), "other")


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


def _format_validation_error(spec: _PlanSpec, exc: pydantic.ValidationError) -> str:
    """The first pydantic error as one line: ``plan: argument 'p' (item 2): message``."""
    error = exc.errors(include_url=False)[0]
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


# -- plan signatures -> pydantic fields -------------------------------------------------

# Classes from these modules are data types (pydantic validates them), never devices.
_DATA_MODULES = {"builtins", "collections.abc", "typing", "datetime", "decimal", "pathlib", "uuid"}
_SEQUENCE_ORIGINS = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_CONTAINER_ORIGINS = (*_SEQUENCE_ORIGINS, set, frozenset, dict, abc.Mapping, abc.MutableMapping)
_PROTOCOL_WORDS: dict[type, str] = {Movable: "movable", Readable: "readable", Flyable: "flyable"}


@dataclass(frozen=True)
class _DeviceParam:
    types: tuple[type, ...]  # the device object must be an instance of one of these
    sequence: bool  # takes a list of names (also one string "a b" / "a, b")
    container: type  # list or tuple, for sequences
    optional: bool  # None is accepted


@dataclass(frozen=True)
class _Param:
    name: str
    annotation: Any
    default: Any
    device: _DeviceParam | None


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    tp = _strip_annotated(tp)
    if get_origin(tp) in (Union, UnionType):
        return [_strip_annotated(m) for m in get_args(tp)]
    return [tp]


def _is_device_type(tp: Any) -> bool:
    cls = get_origin(tp) or tp  # Readable[float] -> Readable
    if not isinstance(cls, type) or cls.__module__ in _DATA_MODULES:
        return False
    if getattr(cls, "_is_protocol", False):
        return True
    return not (
        issubclass(cls, Enum | pydantic.BaseModel | tuple)
        or dataclasses.is_dataclass(cls)
        or is_typeddict(cls)
    )


def _classify(annotation: Any) -> _DeviceParam | None:
    """Describe a device parameter, None for a data parameter; TypeError for mixtures."""
    members = _union_members(annotation)
    optional = type(None) in members
    singles: list[type] = []
    sequences: list[tuple[tuple[type, ...], type]] = []
    plain = False
    for member in (m for m in members if m is not type(None)):
        origin, args = get_origin(member), get_args(member)
        if _is_device_type(member):
            singles.append(get_origin(member) or member)
        elif origin in _SEQUENCE_ORIGINS and args:
            homogeneous = origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)
            elements = _union_members(args[0]) if homogeneous else list(args)
            if homogeneous and all(_is_device_type(e) for e in elements):
                classes = tuple(get_origin(e) or e for e in elements)
                sequences.append((classes, tuple if origin is tuple else list))
            elif any(_is_device_type(e) for e in elements):
                raise TypeError(f"unsupported device annotation {annotation!r}")
            else:
                plain = True
        else:
            plain = True
    if not singles and not sequences:
        return None
    if plain or (singles and sequences) or len(sequences) > 1:
        raise TypeError(f"annotation {annotation!r} mixes devices with other types")
    types, container = sequences[0] if sequences else (tuple(singles), list)
    for cls in types:
        if getattr(cls, "_is_protocol", False) and not getattr(cls, "_is_runtime_protocol", False):
            raise TypeError(f"protocol {cls.__name__} is not @runtime_checkable")
    return _DeviceParam(types, bool(sequences), container, optional)


def _unpartial(plan: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(plan, functools.partial):
        plan = plan.func
    return plan


def _plan_parameters(name: str, plan: Callable[..., Any]) -> list[_Param]:
    if not callable(plan):
        raise TypeError(f"plan {name!r} is not callable: {plan!r}")
    if not (inspect.isgeneratorfunction(plan) or inspect.isgeneratorfunction(inspect.unwrap(plan))):
        raise TypeError(
            f"plan {name!r} is not a generator function; a plan must yield bluesky messages"
        )
    try:
        signature = inspect.signature(plan)
        hints = get_type_hints(_unpartial(plan), include_extras=True)
    except Exception as exc:
        raise TypeError(f"plan {name!r}: cannot read its signature: {exc}") from exc
    params = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise TypeError(
                f"plan {name!r} takes {star}{param.name}; "
                "plans must take explicit keyword parameters only"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"plan {name!r}: positional-only parameter {param.name!r}")
        if param.name == "md":  # metadata goes another way: not an argument
            if param.default is param.empty:
                raise TypeError(f"plan {name!r}: parameter 'md' needs a default")
            continue
        annotation = hints.get(param.name, Any)
        try:
            device = _classify(annotation)
        except TypeError as exc:
            raise TypeError(f"plan {name!r}, parameter {param.name!r}: {exc}") from None
        params.append(_Param(param.name, annotation, param.default, device))
    return params


def _strictify(tp: Any) -> Any:
    """``tp`` with strict scalars: no str -> number, no bool -> number (int -> float is OK)."""
    if tp in (int, float, bool, str):
        return Annotated[tp, pydantic.Strict()]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return Annotated[(_strictify(args[0]), *tp.__metadata__)]
    if origin in (Union, UnionType):
        return Union[tuple(_strictify(a) for a in args)]  # noqa: UP007
    if origin in _CONTAINER_ORIGINS and args:
        return origin[tuple(a if a is Ellipsis else _strictify(a) for a in args)]
    return tp


def _parameter_docs(plan: Callable[..., Any]) -> dict[str, str]:
    """Descriptions from the numpydoc "Parameters" section of the plan's docstring."""
    lines = (inspect.getdoc(_unpartial(plan)) or "").splitlines()
    entries: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    in_section = False
    for i, line in enumerate(lines):
        if line.strip() and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            in_section = line.strip() == "Parameters"  # a section header
        elif not in_section or set(line.strip()) == {"-"}:
            continue
        elif line and not line[0].isspace():  # "name : type"
            names, _, kind = line.partition(":")
            current = []
            for pname in names.split(","):
                entries[pname.strip()] = (kind.strip(), current)
        elif line.strip():
            current.append(line.strip())
    return {k: " ".join(desc) or kind for k, (kind, desc) in entries.items() if desc or kind}


def _device_field(
    spec: _DeviceParam, devices: Mapping[str, Any], lookup: Callable[[str], Any]
) -> Any:
    """An annotation whose validator turns device names into device objects."""

    def fits(obj: Any) -> bool:
        try:
            return isinstance(obj, spec.types)
        except Exception:
            return False

    words = [_PROTOCOL_WORDS.get(cls) for cls in spec.types]
    if all(words):
        wanted = " or ".join(w for w in words if w)
        misfit = "'{name}' is a {kind} device, not a " + wanted + " one"
        other = "'{name}' ({cls}) is not a " + wanted + " device"
    else:
        wanted = " or ".join(cls.__name__ for cls in spec.types)
        misfit = other = "'{name}' ({cls}) is not an instance of " + wanted

    def refuse(message: str, item: int | None = None) -> PydanticCustomError:
        return PydanticCustomError("device", "{message}", {"message": message, "item": item})

    def one(value: Any, item: int | None = None) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise refuse(f"expected a device name, got {value!r}", item)
        name = value.strip()
        if _SEPARATORS.search(name):
            raise refuse(f"expected one device name, got {value!r}", item)
        try:
            obj = lookup(name)
        except ArgumentError as exc:
            raise refuse(str(exc), item) from None
        if not fits(obj):
            kind = device_kind(obj)
            text = other if kind == "other" else misfit
            raise refuse(text.format(name=name, kind=kind, cls=type(obj).__name__), item)
        return obj

    def validate(value: Any) -> Any:
        if value is None and spec.optional:
            return None
        if not spec.sequence:
            return one(value)
        if isinstance(value, str):
            names: list[Any] = [n for n in _SEPARATORS.split(value) if n]
        elif isinstance(value, list | tuple):
            names = list(value)
        else:
            raise refuse(f"expected a list of device names, got {value!r}")
        if not names:
            raise refuse("at least one device is needed")
        objs: list[Any] = []
        for index, name in enumerate(names):
            obj = one(name, index if len(names) > 1 else None)
            if any(obj is seen for seen in objs):
                raise refuse(f"device {name.strip()!r} is given more than once", index)
            objs.append(obj)
        return spec.container(objs)

    item: dict[str, Any] = {"type": "string"}
    candidates = [name for name in sorted(devices) if fits(devices[name])]
    if candidates:
        item["enum"] = candidates
    schema = {"type": "array", "items": item, "minItems": 1} if spec.sequence else item
    if spec.optional:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return Annotated[Any, pydantic.PlainValidator(validate), pydantic.WithJsonSchema(schema)]
