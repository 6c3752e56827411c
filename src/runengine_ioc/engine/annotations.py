"""Markers a plan may put in ``typing.Annotated`` to tell the IOC more about a parameter.

``Annotated[float, Units("s"), pydantic.Field(ge=0)]`` makes the parameter's form PV carry
EGU ``s`` and a lower drive limit of 0. ``Annotated[int, PointFactor()]`` says the parameter
multiplies into the number of points the plan takes, so that the registry can refuse a plan
too big to run *before* its generator is made (bluesky's plans build their whole trajectory
up front: ``scan num=2**31-1`` would allocate gigabytes). Plain data: the registry reads it,
pydantic ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Units:
    """Engineering units of a numeric parameter (shown as the form PV's EGU)."""

    symbol: str


@dataclass(frozen=True)
class PointFactor:
    """The parameter is a factor of the plan's number of points.

    An integer counts as itself (``num``), a list as its length (the positions of a
    ``list_scan``), ``None`` as 1. The plan's size is the product over its marked parameters
    (``num1 * num2`` for a grid); a plan with no marked parameter is not bounded by the IOC.
    """
