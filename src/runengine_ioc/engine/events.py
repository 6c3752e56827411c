"""What the worker reports upwards: plain, immutable records that cross the thread boundary.

Nothing here knows about Channel Access or about RunEngine internals; the worker creates these
on its own threads and the bridge hands them to the IOC's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: The RunEngine's states, in the order the State mbbi enumerates them.
RUN_ENGINE_STATES: tuple[str, ...] = (
    "idle",
    "running",
    "pausing",
    "paused",
    "halting",
    "stopping",
    "aborting",
    "suspending",
    "panicked",
)


class ExitStatus(str, Enum):
    """Outcome of the last plan, in the order the ExitStatus mbbi enumerates them."""

    NONE = "none"
    SUCCESS = "success"
    FAIL = "fail"
    ABORT = "abort"


class Refused(RuntimeError):
    """A command that cannot be carried out in the RunEngine's present state."""


@dataclass(frozen=True)
class StateChanged:
    """The RunEngine moved from ``previous`` to ``state`` (published at once, in order).

    ``stuck``: the RunEngine has been ending a plan (stopping, aborting, halting) for longer
    than the halt timeout; shown with a MAJOR alarm until the state changes.
    """

    state: str
    previous: str
    stuck: bool = False


@dataclass(frozen=True)
class PlanAccepted:
    """A plan passed validation and was handed to the RunEngine."""

    ticket: int
    plan_name: str


@dataclass(frozen=True)
class RunOpened:
    """A start document was emitted."""

    uid: str
    scan_id: int
    plan_name: str
    total_points: int | None
    start_time: float
    data_file: str = ""


@dataclass(frozen=True)
class RunClosed:
    """A stop document was emitted."""

    uid: str
    exit_status: str
    reason: str
    num_events: int


class Coalesced:
    """Base of the records of which only the latest matters (one slot per type in the bridge).

    They are published at a bounded rate, never before an ordered event sent before them,
    and always before the next RunClosed or PlanFinished.
    """


@dataclass(frozen=True)
class Progress(Coalesced):
    """Per-point progress of the current run: coalesced before it is published."""

    current_point: int
    total_points: int | None
    start_time: float
    last_point_time: float

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.start_time)

    def remaining(self, now: float) -> float:
        """Time left, extrapolated from the points done so far; -1 where unknown."""
        if not self.total_points or self.current_point <= 0:
            return -1.0
        per_point = (self.last_point_time - self.start_time) / self.current_point
        left = per_point * (self.total_points - self.current_point)
        since_last = now - self.last_point_time
        return max(0.0, left - since_last)

    def percent(self) -> float:
        if not self.total_points:
            return 0.0
        return min(100.0, 100.0 * self.current_point / self.total_points)


@dataclass(frozen=True)
class PlanFinished:
    """The RunEngine returned to idle after running the plan of ``ticket``."""

    ticket: int
    plan_name: str
    exit_status: ExitStatus
    message: str
    run_uids: tuple[str, ...] = field(default_factory=tuple)
    #: the worker process ended under the plan (its run closed by the IOC)
    interrupted: bool = False
    #: the ticket of the plan handed over to follow this one, started at its end (None: none)
    followed_by: int | None = None


@dataclass(frozen=True)
class WorkerRestarted:
    """The worker process died or was ended (wedged, over its memory limit) and a new one is
    starting: shown on Status with a MAJOR alarm, counted on Worker:Restarts."""

    count: int
    reason: str


@dataclass(frozen=True)
class WorkerTainted:
    """The worker gave a RunEngine up and left its threads behind: it asks to be replaced by
    a fresh process once idle (the IOC's supervisor does so, out of sight of clients)."""

    reason: str


@dataclass(frozen=True)
class StatusMessage:
    """A human-readable line for the Status PV."""

    text: str


@dataclass(frozen=True)
class DataSnapshot:
    """The live arrays of a run, copied at publish time (plain numpy arrays and names)."""

    run_uid: str
    x_name: str
    y_names: tuple[str, ...]
    x: Any  # numpy array, the valid points in the order taken
    ys: tuple[Any, ...]  # one array per y name
    points_taken: int  # may exceed len(x) when the run is longer than the capacity
    last_event: str  # JSON of the last primary event's data


@dataclass(frozen=True)
class DataUpdate(Coalesced):
    """The live data of a run grew; ``take()`` copies it, on the publishing side only."""

    run_uid: str
    take: Callable[[], DataSnapshot]


@dataclass(frozen=True)
class PeakStatsComputed:
    """bluesky's PeakStats at the end of a 1-D scan; NaN where undefined."""

    run_uid: str
    detector: str
    motor: str
    cen: float
    com: float
    max: float
    max_pos: float
    fwhm: float


@dataclass(frozen=True)
class SinkHealth(Coalesced):
    """How the document sinks are doing: one line, a severity (0-2), undelivered count."""

    text: str
    severity: int
    undelivered: int


WorkerEvent = (
    StateChanged
    | PlanAccepted
    | RunOpened
    | RunClosed
    | PlanFinished
    | StatusMessage
    | PeakStatsComputed
    | WorkerRestarted
    | WorkerTainted
)

#: Called by the worker, from any of its threads, with everything it has to say; it must be
#: thread-safe and never block (the bridge's :meth:`~.bridge.Bridge.listener`).
Listener = Callable[[WorkerEvent | Coalesced], None]

#: A bluesky document callback: ``callback(name, doc)``.
DocumentCallback = Callable[[str, dict], Any]
