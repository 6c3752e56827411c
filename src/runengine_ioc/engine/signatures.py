"""From a plan's signature to validated fields: which parameters take devices, and how.

Part of the registry: turns type hints into pydantic annotations (strict scalars, device
names looked up and checked against the annotated protocol or class). No caproto here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

import pydantic
from bluesky.protocols import Flyable, Movable, Readable
from pydantic_core import PydanticCustomError

from .annotations import PointFactor, Units

SEPARATORS = re.compile(r"[\s,]+")


class ArgumentError(ValueError):
    """A plan name, device name or plan argument was refused: ``str(err)`` is one line."""


def device_kind(obj: Any) -> str:
    """``"movable"``, ``"flyable"``, ``"readable"`` or ``"other"`` (first that applies)."""
    kinds = ((Movable, "movable"), (Flyable, "flyable"), (Readable, "readable"))
    return next((word for protocol, word in kinds if isinstance(obj, protocol)), "other")


# -- plan signatures -> pydantic fields -------------------------------------------------

# Classes from these modules are data types (pydantic validates them), never devices.
_DATA_MODULES = {"builtins", "collections.abc", "typing", "datetime", "decimal", "pathlib", "uuid"}
_SEQUENCE_ORIGINS = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_CONTAINER_ORIGINS = (*_SEQUENCE_ORIGINS, set, frozenset, dict, abc.Mapping, abc.MutableMapping)
_PROTOCOL_WORDS: dict[type, str] = {Movable: "movable", Readable: "readable", Flyable: "flyable"}


@dataclass(frozen=True)
class DeviceParam:
    types: tuple[type, ...]  # the device object must be an instance of one of these
    sequence: bool  # takes a list of names (also one string "a b" / "a, b")
    container: type  # list or tuple, for sequences
    optional: bool  # None is accepted


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    default: Any
    device: DeviceParam | None


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


def _classify(annotation: Any) -> DeviceParam | None:
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
    return DeviceParam(types, bool(sequences), container, optional)


def unpartial(plan: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(plan, functools.partial):
        plan = plan.func
    return plan


def plan_parameters(name: str, plan: Callable[..., Any]) -> list[Param]:
    if not callable(plan):
        raise TypeError(f"plan {name!r} is not callable: {plan!r}")
    if not (inspect.isgeneratorfunction(plan) or inspect.isgeneratorfunction(inspect.unwrap(plan))):
        raise TypeError(
            f"plan {name!r} is not a generator function; a plan must yield bluesky messages"
        )
    try:
        signature = inspect.signature(plan)
        hints = get_type_hints(unpartial(plan), include_extras=True)
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
        params.append(Param(param.name, annotation, param.default, device))
    return params


def strictify(tp: Any) -> Any:
    """``tp`` with strict scalars: no str -> number, no bool -> number (int -> float is OK)."""
    if tp in (int, float, bool, str):
        return Annotated[tp, pydantic.Strict()]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return Annotated[(strictify(args[0]), *tp.__metadata__)]
    if origin in (Union, UnionType):
        return Union[tuple(strictify(a) for a in args)]  # noqa: UP007
    if origin in _CONTAINER_ORIGINS and args:
        return origin[tuple(a if a is Ellipsis else strictify(a) for a in args)]
    return tp


def parameter_docs(plan: Callable[..., Any]) -> dict[str, str]:
    """Descriptions from the numpydoc "Parameters" section of the plan's docstring."""
    lines = (inspect.getdoc(unpartial(plan)) or "").splitlines()
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


def device_field(
    spec: DeviceParam, devices: Mapping[str, Any], lookup: Callable[[str], Any]
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
        if SEPARATORS.search(name):
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
            names: list[Any] = [n for n in SEPARATORS.split(value) if n]
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


# -- the size of a plan ---------------------------------------------------------------


def is_point_factor(annotation: Any) -> bool:
    """True if a PointFactor marks the annotation (at any level of Annotated, or Optional)."""
    stack = [annotation]
    while stack:
        tp = stack.pop()
        if get_origin(tp) is Annotated:
            if any(isinstance(meta, PointFactor) for meta in tp.__metadata__):
                return True
            stack.append(get_args(tp)[0])
        elif get_origin(tp) in (Union, UnionType):
            stack.extend(get_args(tp))
    return False


def factor_of(value: Any) -> int:
    """What one PointFactor parameter contributes: an int itself, a list its length."""
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return max(value, 1)
    if isinstance(value, list | tuple):
        return max(len(value), 1)
    if isinstance(value, str):  # a list of names given as one string (devices)
        return max(len(value.replace(",", " ").split()), 1)
    return 1


# -- parameters as form fields ----------------------------------------------------------

#: What a parameter's form PV holds (see :class:`ParameterInfo`).
FORM_KINDS = (
    "float",
    "int",
    "bool",
    "str",
    "choice",
    "device",
    "devices",
    "floats",
    "ints",
    "json",
)


@dataclass(frozen=True)
class ParameterInfo:
    """One plan parameter, described for a form: its kind, default, choices, units, limits.

    ``kind`` is one of :data:`FORM_KINDS`; ``choices`` are the allowed values of a
    ``choice`` (Literal/Enum) or the candidate device names of a ``device``/``devices``
    parameter; ``default`` is JSON-like, ``None`` when the parameter is required.
    """

    name: str
    kind: str
    required: bool
    default: Any = None
    choices: tuple[str, ...] = ()
    units: str = ""
    low: float | None = None
    high: float | None = None
    doc: str = ""
    optional: bool = False
    choice_values: tuple[Any, ...] = ()  # the plan's own values behind ``choices``


def _constraints(annotation: Any) -> tuple[str, float | None, float | None]:
    """Units and inclusive bounds from Annotated metadata (pydantic Field, annotated-types)."""
    units, low, high = "", None, None
    tp = annotation
    while get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            for item in [meta, *getattr(meta, "metadata", [])]:
                if isinstance(item, Units):
                    units = item.symbol
                for attr, is_low in (("ge", True), ("gt", True), ("le", False), ("lt", False)):
                    bound = getattr(item, attr, None)
                    if isinstance(bound, int | float) and not isinstance(bound, bool):
                        if is_low:
                            low = float(bound)
                        else:
                            high = float(bound)
        tp = get_args(tp)[0]
    return units, low, high


def _scalar_kind(tp: Any) -> tuple[str, tuple[Any, ...]]:
    """The form kind of a data annotation, and the values of a choice."""
    tp = _strip_annotated(tp)
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    if tp in simple:
        return simple[tp], ()
    if get_origin(tp) is Literal:
        return "choice", get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "choice", tuple(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin in _SEQUENCE_ORIGINS and args:
        element = _strip_annotated(args[0])
        if element in (float, int):
            return simple[element] + "s", ()
    return "json", ()


def describe_parameter(param: Param, doc: str, candidates: tuple[str, ...]) -> ParameterInfo:
    """How a parameter shows in a form; ``candidates`` are the device names that fit it."""
    required = param.default is inspect.Parameter.empty
    default = None if required else param.default
    if param.device is not None:
        kind = "devices" if param.device.sequence else "device"
        if isinstance(default, list | tuple):
            default = [getattr(d, "name", d) for d in default]
        elif default is not None:
            default = getattr(default, "name", default)
        return ParameterInfo(
            param.name, kind, required, default, candidates, doc=doc, optional=param.device.optional
        )
    members = [m for m in _union_members(param.annotation) if m is not type(None)]
    optional = len(members) < len(_union_members(param.annotation))
    kind, choices = _scalar_kind(members[0]) if len(members) == 1 else ("json", ())
    units, low, high = _constraints(param.annotation)
    if isinstance(default, Enum):
        default = default.value
    return ParameterInfo(
        param.name, kind, required, default, choices, units, low, high, doc, optional
    )
