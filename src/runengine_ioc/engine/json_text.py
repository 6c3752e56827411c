"""JSON typed by an operator (PlanArgs, Metadata, Submit, Queue:Add), read strictly.

Python's json module reads ``NaN`` and ``Infinity``, which are not JSON: a start document
holding one could not be saved by a strict writer, and a point count of ``Infinity`` would
overflow. They, and nesting deep enough to exhaust the parser, are refused in words.
"""

from __future__ import annotations

import json
from typing import Any

from .registry import ArgumentError


def parse_json(text: str, what: str) -> Any:
    """The value of ``text``; ``ArgumentError`` naming ``what`` when it is not strict JSON."""

    def not_json(constant: str) -> Any:
        raise ArgumentError(f"{what}: {constant} is not a number JSON allows (a finite number)")

    try:
        return json.loads(text, parse_constant=not_json)
    except RecursionError:
        raise ArgumentError(f"{what} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"{what} is not valid JSON: {exc.msg} at character {exc.pos}") from exc


#: The keys of a plan request (Submit, Queue:Add); ``plan`` is required.
REQUEST_KEYS = ("plan", "args", "metadata")


def parse_plan_request(
    text: str, label: str, extra_keys: tuple[str, ...] = ()
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Plan name, arguments, metadata (and the ``extra_keys`` given) of a JSON plan request.

    One reading for every PV that takes ``{"plan": ..., "args": {...}, "metadata": {...}}``
    (Submit, Queue:Add), so that they accept and refuse the same things in the same words;
    ``label`` names the PV in the refusal.
    """
    value = parse_json(text, label)
    if not isinstance(value, dict):
        raise ArgumentError(
            f"{label} must be a JSON object, not {type(value).__name__} "
            '(expected {"plan": ..., "args": {...}, "metadata": {...}})'
        )
    allowed = (*REQUEST_KEYS, *extra_keys)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        names = ", ".join(allowed[:-1]) + " and " + allowed[-1]
        raise ArgumentError(f"{label} takes {names}; unknown key(s): {', '.join(unknown)}")
    plan = value.get("plan")
    if not isinstance(plan, str) or not plan.strip():
        raise ArgumentError(f'{label} needs "plan": the name of a plan in PlanList')
    arguments = value.get("args", {})
    metadata = value.get("metadata", {})
    for key, part in (("args", arguments), ("metadata", metadata)):
        if not isinstance(part, dict):
            raise ArgumentError(f'{label}\'s "{key}" must be a JSON object {{...}}')
    extras = {key: value[key] for key in extra_keys if key in value}
    return plan.strip(), arguments, metadata, extras
