"""Operator-friendly plans for the RunEngine IOC.

Every plan here is a thin, typed layer over one of bluesky's own plans
(:mod:`bluesky.plans`, :mod:`bluesky.plan_stubs`) with explicit keyword parameters, so
that the IOC's registry can validate the arguments an operator types, by name, before
anything runs. The constraints in the ``Annotated`` metadata (``ge=1`` and so on) show in
the JSON schema of each plan and are enforced by the registry; the plans check them again
when they start, for callers that run them directly in a RunEngine.

Import as ``runengine_ioc.plans``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from typing import Annotated, Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
from bluesky.protocols import Movable, Readable
from bluesky.utils import Msg
from pydantic import Field

from runengine_ioc.engine.annotations import PointFactor, Units

__all__ = [
    "DEFAULT_PLANS",
    "MsgGenerator",
    "PointFactor",
    "Units",
    "count",
    "grid_scan",
    "list_scan",
    "mv",
    "rel_grid_scan",
    "rel_scan",
    "scan",
]

#: What every plan returns: a generator of bluesky messages.
MsgGenerator = Generator[Msg, Any, Any]

# Constrained scalar types. To a type checker these are plain ``int`` / ``float``; the
# pydantic metadata is read by the registry and shows in the plans' JSON schemas.
# PointFactor marks what multiplies into a plan's number of points, so that the IOC can
# refuse a plan beyond its --max-points before bluesky builds the whole trajectory.
Points = Annotated[int, Field(ge=1), PointFactor()]
Position = Annotated[float, Field(allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False), Units("s")]
Positions = Annotated[Sequence[Position], Field(min_length=1), PointFactor()]


def _check_detectors(detectors: Sequence[Readable]) -> list[Readable]:
    if isinstance(detectors, str) or not isinstance(detectors, Sequence):
        raise ValueError(f"detectors must be a list of devices, got {detectors!r}")
    if not detectors:
        raise ValueError("detectors: at least one device is needed")
    return list(detectors)


def _check_points(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _check_seconds(name: str, value: float) -> float:
    _check_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _check_distinct(motor1: Movable, motor2: Movable) -> None:
    if motor1 is motor2:
        raise ValueError("motor1 and motor2 must be different devices")


def count(detectors: Sequence[Readable], num: Points = 1, delay: Seconds = 0.0) -> MsgGenerator:
    """Read the detectors ``num`` times, without moving anything.

    Parameters
    ----------
    detectors : list of readable devices
        The devices to read at each point.
    num : int
        Number of readings (points); at least 1.
    delay : float
        Time to wait between the end of one reading and the start of the next, in seconds.

    Returns
    -------
    str
        The uid of the run.
    """
    dets = _check_detectors(detectors)
    _check_points("num", num)
    _check_seconds("delay", delay)
    return (yield from bp.count(dets, num=num, delay=delay))


def scan(
    detectors: Sequence[Readable],
    motor: Movable,
    start: Position,
    stop: Position,
    num: Points,
) -> MsgGenerator:
    """Step one motor from start to stop in equal steps, reading the detectors at each point.

    Parameters
    ----------
    detectors : list of readable devices
        The devices to read at each point.
    motor : movable device
        The device to move.
    start : float
        First position, absolute, in the motor's engineering units.
    stop : float
        Last position, absolute, in the motor's engineering units (included).
    num : int
        Number of points, including both ends; at least 1.

    Returns
    -------
    str
        The uid of the run.
    """
    dets = _check_detectors(detectors)
    _check_finite("start", start)
    _check_finite("stop", stop)
    _check_points("num", num)
    return (yield from bp.scan(dets, motor, start, stop, num=num))


def rel_scan(
    detectors: Sequence[Readable],
    motor: Movable,
    start: Position,
    stop: Position,
    num: Points,
) -> MsgGenerator:
    """Step one motor relative to where it is now, then move it back to where it was.

    Parameters
    ----------
    detectors : list of readable devices
        The devices to read at each point.
    motor : movable device
        The device to move.
    start : float
        First position, relative to the current one, in the motor's engineering units.
    stop : float
        Last position, relative to the current one, in the motor's engineering units
        (included).
    num : int
        Number of points, including both ends; at least 1.

    Returns
    -------
    str
        The uid of the run.
    """
    dets = _check_detectors(detectors)
    _check_finite("start", start)
    _check_finite("stop", stop)
    _check_points("num", num)
    return (yield from bp.rel_scan(dets, motor, start, stop, num=num))


def list_scan(
    detectors: Sequence[Readable],
    motor: Movable,
    positions: Positions,
) -> MsgGenerator:
    """Move one motor to each of a list of positions, reading the detectors at each one.

    Parameters
    ----------
    detectors : list of readable devices
        The devices to read at each point.
    motor : movable device
        The device to move.
    positions : list of float
        The absolute positions to visit, in order, in the motor's engineering units;
        at least one.

    Returns
    -------
    str
        The uid of the run.
    """
    dets = _check_detectors(detectors)
    if isinstance(positions, str) or not isinstance(positions, Sequence):
        raise ValueError(f"positions must be a list of numbers, got {positions!r}")
    if not positions:
        raise ValueError("positions: at least one position is needed")
    points = [_check_finite(f"positions[{i}]", p) for i, p in enumerate(positions)]
    args: list[Any] = [motor, points]  # bluesky's annotation of *args is too narrow
    return (yield from bp.list_scan(dets, *args))


def _grid_args(
    motor1: Movable,
    start1: float,
    stop1: float,
    num1: int,
    motor2: Movable,
    start2: float,
    stop2: float,
    num2: int,
) -> list[Any]:
    _check_distinct(motor1, motor2)
    for name, value in (("start1", start1), ("stop1", stop1), ("start2", start2), ("stop2", stop2)):
        _check_finite(name, value)
    _check_points("num1", num1)
    _check_points("num2", num2)
    return [motor1, start1, stop1, num1, motor2, start2, stop2, num2]


def grid_scan(
    detectors: Sequence[Readable],
    motor1: Movable,
    start1: Position,
    stop1: Position,
    num1: Points,
    motor2: Movable,
    start2: Position,
    stop2: Position,
    num2: Points,
    snake: bool = False,
) -> MsgGenerator:
    """Scan a two-dimensional mesh: motor1 is the slow (outer) axis, motor2 the fast one.

    Parameters
    ----------
    detectors : list of readable devices
        The devices to read at each point.
    motor1 : movable device
        The slow (outer) axis.
    start1 : float
        First position of motor1, absolute, in its engineering units.
    stop1 : float
        Last position of motor1, absolute, in its engineering units (included).
    num1 : int
        Number of points along motor1; at least 1.
    motor2 : movable device
        The fast (inner) axis; must differ from motor1.
    start2 : float
        First position of motor2, absolute, in its engineering units.
    stop2 : float
        Last position of motor2, absolute, in its engineering units (included).
    num2 : int
        Number of points along motor2; at least 1.
    snake : bool
        If true, motor2 goes back and forth (start2 to stop2, then stop2 to start2, ...)
        instead of returning to start2 at the start of each row.

    Returns
    -------
    str
        The uid of the run.
    """
    dets = _check_detectors(detectors)
    args = _grid_args(motor1, start1, stop1, num1, motor2, start2, stop2, num2)
    return (yield from bp.grid_scan(dets, *args, snake_axes=bool(snake)))


def rel_grid_scan(
    detectors: Sequence[Readable],
    motor1: Movable,
    start1: Position,
    stop1: Position,
    num1: Points,
    motor2: Movable,
    start2: Position,
    stop2: Position,
    num2: Points,
    snake: bool = False,
) -> MsgGenerator:
    """Scan a two-dimensional mesh relative to the current positions, then move back.

    Parameters
    ----------
    detectors : list of readable devices
        The devices to read at each point.
    motor1 : movable device
        The slow (outer) axis.
    start1 : float
        First position of motor1, relative to its current one, in its engineering units.
    stop1 : float
        Last position of motor1, relative to its current one, in its engineering units
        (included).
    num1 : int
        Number of points along motor1; at least 1.
    motor2 : movable device
        The fast (inner) axis; must differ from motor1.
    start2 : float
        First position of motor2, relative to its current one, in its engineering units.
    stop2 : float
        Last position of motor2, relative to its current one, in its engineering units
        (included).
    num2 : int
        Number of points along motor2; at least 1.
    snake : bool
        If true, motor2 goes back and forth instead of returning to start2 on each row.

    Returns
    -------
    str
        The uid of the run.
    """
    dets = _check_detectors(detectors)
    args = _grid_args(motor1, start1, stop1, num1, motor2, start2, stop2, num2)
    return (yield from bp.rel_grid_scan(dets, *args, snake_axes=bool(snake)))


def mv(device: Movable, position: Position) -> MsgGenerator:
    """Move one device to an absolute position and wait until it gets there (opens no run).

    Parameters
    ----------
    device : movable device
        The device to move.
    position : float
        The target position, absolute, in the device's engineering units.

    Returns
    -------
    tuple of Status
        The status of the move.
    """
    _check_finite("position", position)
    return (yield from bps.mv(device, position))


#: The plans an IOC offers when its profile names none of its own.
DEFAULT_PLANS: tuple[Callable[..., MsgGenerator], ...] = (
    count,
    scan,
    rel_scan,
    list_scan,
    grid_scan,
    rel_grid_scan,
    mv,
)
