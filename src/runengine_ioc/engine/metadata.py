"""Start-document metadata that clients may give: checked the same way at put and at Start.

Its own module so that the CA side can check a Metadata put without importing the worker.
A client's metadata is merged *over* what the plan and the RunEngine put in the start
document, so a key they set would falsify the record of the run (a start document saying
``num_points: 3`` for a run of 10 events): every such key is refused, as is anything that
could not be saved (NaN, infinities, deep nesting, integers no database stores) or that the
start document's own schema (event_model) rejects.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import event_model

from .registry import ArgumentError

#: Keys the RunEngine sets itself in every start document.
RUN_ENGINE_METADATA_KEYS = frozenset({"uid", "time", "scan_id", "versions"})
#: Keys bluesky's plans (and so the IOC's) set in their start documents.
PLAN_METADATA_KEYS = frozenset(
    {
        "plan_name",
        "plan_type",
        "plan_args",
        "plan_pattern",
        "plan_pattern_module",
        "plan_pattern_args",
        "detectors",
        "motors",
        "num_points",
        "num_intervals",
        "hints",
        "extents",
        "shape",
        "snaking",
    }
)
#: Keys the IOC adds itself on the way to the worker (who started the run: the gate).
IOC_METADATA_KEYS = frozenset({"started_by"})
#: Metadata keys a client may never set (the profile's own keys are refused as well).
RESERVED_METADATA_KEYS = RUN_ENGINE_METADATA_KEYS | PLAN_METADATA_KEYS

#: Deepest nesting of lists and objects accepted (JSON writers recurse; a database has limits).
MAX_METADATA_DEPTH = 16
#: Integers beyond 64 bits cannot be saved by msgpack or MongoDB.
_INT64 = (-(2**63), 2**63 - 1)


def validate_metadata(
    metadata: Mapping[str, Any], profile_keys: Collection[str] = (), *, client: bool = True
) -> dict[str, Any]:
    """Refuse metadata that would override the start document or could not be saved.

    Parameters
    ----------
    metadata
        The metadata a client gave (a JSON object).
    profile_keys
        The profile's own metadata keys (``Profile.metadata``): refused too, since a client's
        value would replace the beamline's.
    client
        True for metadata as a client gave it; False where the IOC has already added its own
        keys (:data:`IOC_METADATA_KEYS`, at the worker), which are then let through.

    Raises
    ------
    ArgumentError
        One line naming the keys and who sets them, or the value that cannot be saved.
    """
    if not isinstance(metadata, Mapping):
        raise ArgumentError("Metadata must be a JSON object")
    problems = []
    for keys, who in (
        (RUN_ENGINE_METADATA_KEYS, "the RunEngine"),
        (PLAN_METADATA_KEYS, "the plan"),
        (IOC_METADATA_KEYS if client else frozenset(), "the IOC"),
        (frozenset(profile_keys), "the profile"),
    ):
        clash = sorted(keys.intersection(metadata))
        if clash:
            problems.append(f"{', '.join(clash)} (set by {who})")
    if problems:
        raise ArgumentError(f"Metadata may not set {'; '.join(problems)}")
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise ArgumentError(f"Metadata keys must be strings, got {key!r}")
        if not key or "." in key or "/" in key:
            raise ArgumentError(
                f"Metadata key {key!r}: a key may not be empty nor hold '.' or '/' "
                "(start document schema)"
            )
        _check_value(value, key, 1)
    _check_schema(metadata)
    return dict(metadata)


def _check_value(value: Any, where: str, depth: int) -> None:
    """A JSON value that can be saved: finite numbers, 64-bit integers, bounded nesting."""
    if depth > MAX_METADATA_DEPTH:
        raise ArgumentError(
            f"Metadata {where!r}: nested deeper than {MAX_METADATA_DEPTH} levels (cannot be saved)"
        )
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ArgumentError(
                f"Metadata {where!r}: the integer is beyond 64 bits (cannot be saved)"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgumentError(
                f"Metadata {where!r}: {value} is not a finite number (cannot be saved)"
            )
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgumentError(f"Metadata {where!r}: keys must be strings, got {key!r}")
            _check_value(item, f"{where}.{key}", depth + 1)
        return
    raise ArgumentError(
        f"Metadata {where!r}: a {type(value).__name__} is not JSON (cannot be saved)"
    )


def _check_schema(metadata: Mapping[str, Any]) -> None:
    """What event_model's start-document schema says of these keys (a placeholder uid/time)."""
    doc = {**metadata, "uid": "00000000-0000-0000-0000-000000000000", "time": 0.0}
    validator = event_model.schema_validators[event_model.DocumentNames.start]
    error = next(iter(validator.iter_errors(doc)), None)
    if error is None:
        return
    where = ".".join(str(part) for part in error.absolute_path)
    message = " ".join(error.message.split())
    if len(message) > 200:
        message = message[:200] + "..."
    raise ArgumentError(
        f"Metadata {where + ': ' if where else ''}{message} (start document schema)"
    )
