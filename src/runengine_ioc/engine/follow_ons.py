"""Plans handed over to follow the one in progress: the queue's next items, started by the
worker itself, each the moment the one before it ends in success (:class:`FollowOns`).

A part of :class:`~.worker.RunEngineWorker`, kept apart for its size: the worker's lock, its
current job and its listener are the ones used here.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator, Mapping
from typing import Any

from .bluesky_adapter import set_call_metadata
from .engines import Engine
from .events import Listener, PlanAccepted, PlanFinished, StatusMessage
from .jobs import FollowOnChain, Job
from .metadata import validate_metadata
from .registry import Registry
from .runs import RunTracker, plan_outcome


class FollowOns:
    """The follow-on half of the worker: hand over, withdraw, and switch within one call."""

    _lock: threading.Lock
    _job: Job | None
    _tickets: itertools.count[int]
    _registry: Registry
    _follow_ons: FollowOnChain
    _tracker: RunTracker
    _listener: Listener

    def submit_after(
        self,
        ticket: int,
        plan_name: str,
        arguments: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> int | None:
        """Validate a plan to start the moment plan ``ticket`` ends in success; its ticket.

        It starts on the worker's thread right at the other's end, with no round trip to the
        caller (the queue hands its next items over this way). ``ticket`` is the plan in
        progress or the last plan handed over, so several can be lined up. None follows a
        plan that fails, or is stopped, aborted or halted, nor any after it; nor a plan
        withdrawn by :meth:`cancel_follow_ons`. :class:`PlanFinished` ``followed_by`` says
        which started. None (nothing kept) if plan ``ticket`` has already ended. Raises
        ArgumentError or Refused as :meth:`submit` does.
        """
        plan = self._registry.validate(plan_name, arguments)
        md = validate_metadata(metadata, self._registry.metadata_keys, client=False)
        with self._lock:
            follow_on = Job(next(self._tickets), plan, md)
            if not self._follow_ons.hand_over(ticket, follow_on, self._job):
                return None
        return follow_on.ticket

    def cancel_follow_ons(self) -> list[int]:
        """Withdraw every plan handed over that has not started; their tickets."""
        with self._lock:
            return self._follow_ons.withdraw()

    def _one_call(self, engine: Engine, job: Job) -> Generator[Any, Any, Any]:
        """The job's plan, then each plan handed over to follow it, in one RunEngine call.

        A plan that follows starts the moment the one before it returns (no return from the
        RunEngine and no new call in between: 4 -> 2.3 ms between two queue items, the worker
        alone), if it is handed over by then; else it starts after the call, from
        ``_finish``. The generator bears the running plan's name, which bluesky puts in the
        start document when the plan's own metadata has no ``plan_name``.
        """
        first = job.plan.make_generator()

        def plans() -> Generator[Any, Any, Any]:
            current, plan = job, first
            while True:
                result = yield from plan
                follow_on = self._follow_on_now(engine, current)
                if follow_on is None:
                    return result
                current, plan = follow_on, follow_on.plan.make_generator()
                _name_after(combined, plan)

        combined = plans()
        _name_after(combined, first)
        return combined

    def _follow_on_now(self, engine: Engine, ended: Job) -> Job | None:
        """On the RunEngine's loop, ``ended``'s plan having returned: switch to the plan
        handed over to follow it, if there is one and nothing interrupted ``ended``."""
        uids = tuple(self._tracker.run_uids)
        status, message = plan_outcome(None, None, None, self._tracker.last_stop)
        with self._lock:
            if ended is not self._job or engine.abandoned:
                return None
            follow_on = self._follow_ons.next_after(ended, status)
            if follow_on is None:
                return None  # the call ends, and _finish says how
            follow_on.handed_over = follow_on.driving = True
            self._job = follow_on
            ended.finished.set()
        self._listener(
            PlanFinished(
                ended.ticket, ended.plan.name, status, message, uids, followed_by=follow_on.ticket
            )
        )
        self._listener(PlanAccepted(follow_on.ticket, follow_on.plan.name))
        self._tracker.reset()
        self._listener(StatusMessage(f"running {follow_on.plan.name}"))
        set_call_metadata(engine.re, follow_on.metadata)
        return follow_on


def _name_after(combined: Generator[Any, Any, Any], plan: object) -> None:
    """Give the generator the name of the plan running in it (generators' names are
    writable; typing's Generator does not say so)."""
    name = getattr(plan, "__name__", None)
    if isinstance(name, str):
        setattr(combined, "__name__", name)  # noqa: B010
