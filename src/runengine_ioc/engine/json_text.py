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
