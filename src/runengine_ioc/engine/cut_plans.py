"""What clients are told when the worker process ends under a plan (the IOC speaks for it).

The worker can no longer close its run nor report its plan's end, so the supervisor does:
the run's file gets a stop document (``close_cut_run``; ExitStatus then agrees with the file,
even with a stop document the worker wrote just before it died), and the plan, the run and the
RunEngine's state end as they would have, marked ``interrupted``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .events import (
    ExitStatus,
    PlanAccepted,
    PlanFinished,
    RunClosed,
    RunOpened,
    StateChanged,
    WorkerEvent,
)

log = logging.getLogger(__name__)

#: Told of a run a dead worker left open (the run, the reason); closes its file and returns
#: the run's exit status as the file now says it (None: no file).
CutRunCloser = Callable[[RunOpened, str], "str | None"]


def events_for_a_cut_plan(
    plan: PlanAccepted | None,
    run: RunOpened | None,
    state: str,
    reason: str,
    close_cut_run: CutRunCloser | None,
) -> list[WorkerEvent]:
    """The events that end ``plan`` and ``run`` (if any) and bring the state to idle."""
    events: list[WorkerEvent] = []
    status = ExitStatus.FAIL
    if run is not None:
        if close_cut_run is not None:
            try:  # ExitStatus agrees with the stop document, even one the worker wrote
                found = close_cut_run(run, reason)
                if found in {s.value for s in ExitStatus}:
                    status = ExitStatus(found)
            except Exception:
                log.exception("closing the run %s cut by the worker's end failed", run.uid)
        events.append(RunClosed(run.uid, status.value, reason, 0))
    if plan is not None:
        runs = (run.uid,) if run is not None else ()
        message = f"interrupted: {reason}"
        events.append(
            PlanFinished(plan.ticket, plan.plan_name, status, message, runs, interrupted=True)
        )
    if state != "idle":
        events.append(StateChanged("idle", state))
    return events
