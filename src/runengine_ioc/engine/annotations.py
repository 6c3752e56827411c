"""Markers a plan may put in ``typing.Annotated`` to tell operators more about a parameter.

``Annotated[float, Units("s"), pydantic.Field(ge=0)]`` makes the parameter's form PV carry
EGU ``s`` and a lower drive limit of 0. Plain data: the registry reads it, pydantic ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Units:
    """Engineering units of a numeric parameter (shown as the form PV's EGU)."""

    symbol: str
