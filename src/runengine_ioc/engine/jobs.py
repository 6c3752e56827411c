"""A plan in the worker's hands, from its acceptance to its end (:class:`Job`).

Kept apart from :mod:`.worker` so that what the worker knows of each plan (the interrupt it
took, the resume under way, the plan handed over to follow it) is read in one place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .bluesky_adapter import plan_depth
from .engines import Engine
from .events import ExitStatus
from .registry import ValidatedPlan


@dataclass
class Job:
    """One accepted plan and what has happened to it so far."""

    ticket: int
    plan: ValidatedPlan
    metadata: dict[str, Any]
    handed_over: bool = False  # given to the RunEngine (which may not be running yet)
    driving: bool = False  # a thread is in (or has queued) a blocking RunEngine call for it
    resume_queued: bool = False  # a Resume waits for the worker's thread
    interrupt: tuple[str, str] | None = None  # (kind, reason) of the Stop/Abort/Halt taken
    # both set on the RunEngine's loop only, so that they and its state are seen together:
    resuming: bool = False  # a Resume is under way (rewinding): an interrupt waits for it
    resume_depth: int = 0  # bluesky's plan stack before the resume stacked its replay
    taken_while_paused: bool = False  # an interrupt acted on the paused plan: no resume now
    finished: threading.Event = field(default_factory=threading.Event)

    def may_act(self, engine: Engine, paused: bool) -> bool:
        """On the loop: may an interrupt act now? Not while a resume rewinds the paused plan.

        bluesky's resume rewinds the run's bundles and replays the messages since the last
        checkpoint; an interrupt thrown into the plan before that replay is done meets a
        half-rewound run (and fails it with IllegalMessageSequence).
        """
        if self.resuming:
            if paused or plan_depth(engine.re) > self.resume_depth:
                return False
            self.resuming = False
        if paused:
            self.taken_while_paused = True
        return True


@dataclass(frozen=True)
class FollowOn:
    """A plan handed over to start the moment the plan of ``after`` ends in success."""

    after: int
    job: Job

    def starts_after(self, ended: Job, status: ExitStatus) -> bool:
        """Whether it starts now that ``ended`` ended with ``status``: only after a success
        that no Stop, Abort or Halt brought about (a stopped plan is a success to bluesky)."""
        return (
            self.after == ended.ticket and status == ExitStatus.SUCCESS and ended.interrupt is None
        )


class FollowOnChain:
    """Plans handed over to follow the plan in progress, each after the one before it.

    Not thread-safe on its own: the worker holds its lock around every use.
    """

    def __init__(self) -> None:
        self._chain: list[FollowOn] = []

    def hand_over(self, after: int, job: Job, current: Job | None) -> bool:
        """Line ``job`` up after plan ``after``, which must be the last plan handed over (or,
        with none, the plan in progress ``current``); False (nothing kept) otherwise."""
        last = self._chain[-1].job if self._chain else current
        if last is None or last.ticket != after:
            return False
        self._chain.append(FollowOn(after, job))
        return True

    def withdraw(self) -> list[int]:
        """Take back every plan not yet started; their tickets."""
        withdrawn, self._chain = self._chain, []
        return [follow_on.job.ticket for follow_on in withdrawn]

    def next_after(self, ended: Job, status: ExitStatus) -> Job | None:
        """The plan that starts now that ``ended`` ended with ``status``, off the chain; None
        if none does (and then none after it will: the rest is dropped)."""
        if self._chain and self._chain[0].starts_after(ended, status):
            return self._chain.pop(0).job
        self._chain = []
        return None
