"""The RunEngine on its own thread, free of any transport.

The worker owns one :class:`bluesky.RunEngine` and runs one plan at a time on a dedicated
thread. Callers (the bridge) submit validated plans and request pause/resume/stop/abort/halt
from any thread; everything the worker has to say goes to one ``listener`` callable as
:mod:`runengine_ioc.engine.events` records. The worker knows nothing of Channel Access.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from .bluesky_adapter import RESUME_FROM_SUSPENDER, describe_suspender
from .events import (
    DocumentCallback,
    ExitStatus,
    Listener,
    PlanAccepted,
    PlanFinished,
    Progress,
    Refused,
    RunClosed,
    RunOpened,
    StateChanged,
    StatusMessage,
)
from .metadata import validate_metadata
from .registry import Registry, ValidatedPlan

log = logging.getLogger(__name__)


_INTERRUPT_OUTCOMES = {
    "stop": (ExitStatus.SUCCESS, "stopped on request"),
    "abort": (ExitStatus.ABORT, "aborted on request"),
    "halt": (ExitStatus.ABORT, "halted on request (no cleanup)"),
}


@dataclass
class _Suspension:
    since: float
    reason: str
    before_start: bool = False  # tripped when the plan was submitted: bluesky waits first


@dataclass
class _Job:
    ticket: int
    plan: ValidatedPlan
    metadata: dict[str, Any]
    handed_over: bool = False  # given to the RunEngine (which may not be running yet)


class _RunTracker:
    """Turns the document stream into run and progress events for the listener."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._primary_descriptors: set[str] = set()
        self._points = 0
        self._total: int | None = None
        self._start_time = 0.0
        self.run_uids: list[str] = []
        self.last_stop: dict[str, Any] | None = None

    def reset(self) -> None:
        self.run_uids = []
        self.last_stop = None

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._primary_descriptors.clear()
            self._points = 0
            total = doc.get("num_points")
            self._total = int(total) if isinstance(total, int | float) and total > 0 else None
            self._start_time = float(doc.get("time", time.time()))
            self.run_uids.append(doc["uid"])
            self._listener(
                RunOpened(
                    uid=doc["uid"],
                    scan_id=int(doc.get("scan_id") or 0),
                    plan_name=str(doc.get("plan_name", "")),
                    total_points=self._total,
                    start_time=self._start_time,
                )
            )
        elif name == "descriptor":
            if doc.get("name") == "primary":
                self._primary_descriptors.add(doc["uid"])
        elif name == "event":
            if doc.get("descriptor") in self._primary_descriptors:
                # a reading replayed after a pause comes again with the same seq_num
                seq_num = int(doc.get("seq_num", self._points + 1))
                if seq_num > self._points:
                    self._points = seq_num
                    self._listener(
                        Progress(self._points, self._total, self._start_time, time.time())
                    )
        elif name == "stop":
            self.last_stop = doc
            self._listener(
                RunClosed(
                    uid=doc.get("run_start", ""),
                    exit_status=str(doc.get("exit_status", "")),
                    reason=str(doc.get("reason", "")),
                    num_events=int((doc.get("num_events") or {}).get("primary", 0)),
                )
            )


class RunEngineWorker:
    """Runs validated plans on one RunEngine, on one thread, one at a time.

    Parameters
    ----------
    registry
        Plans and devices by name; every submission is validated against it.
    listener
        Called (from the worker's or the RunEngine's thread) with every event; must be
        thread-safe and must not block.
    callbacks
        Document callbacks subscribed to the RunEngine for good (file writers, sinks, ...).
    profile_callbacks, suspenders, metadata
        The profile's callbacks, suspenders and start-document defaults (``RE.md``);
        replaced as a whole by :meth:`reconfigure`.
    scan_id_source
        Passed to the RunEngine; lets the caller persist scan ids across restarts.
    """

    def __init__(
        self,
        registry: Registry,
        listener: Listener,
        *,
        callbacks: Iterable[DocumentCallback] = (),
        profile_callbacks: Iterable[DocumentCallback] = (),
        suspenders: Iterable[Any] = (),
        metadata: Mapping[str, Any] | None = None,
        scan_id_source: Callable[[dict], int] | None = None,
    ) -> None:
        self._registry = registry
        self._listener = listener
        self._commands: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._interrupt: tuple[str, str] | None = None
        self._tickets = itertools.count(1)
        options: dict[str, Any] = {"context_managers": [], "call_returns_result": True}
        if scan_id_source is not None:
            options["scan_id_source"] = scan_id_source
        self._re = RunEngine({}, **options)
        self._re.state_hook = self._on_state  # type: ignore[assignment]
        self._re.msg_hook = self._on_msg  # type: ignore[assignment]
        self._suspension: _Suspension | None = None
        self._suspension_lock = threading.Lock()
        self._tracker = _RunTracker(listener)
        self._re.subscribe(self._tracker)
        for callback in callbacks:
            self._re.subscribe(callback)
        self._profile_tokens: list[int] = []
        self._profile_metadata: dict[str, Any] = {}
        self._install(profile_callbacks, suspenders, metadata or {})
        self._thread = threading.Thread(target=self._serve, name="runengine-worker", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- queries
    @property
    def state(self) -> str:
        return str(self._re.state)

    @property
    def busy(self) -> bool:
        """True from an accepted submission until its plan has ended (paused included)."""
        with self._lock:
            return self._job is not None

    @property
    def registry(self) -> Registry:
        return self._registry

    # ---------------------------------------------------------------- commands
    def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> int:
        """Validate and queue a plan; returns its ticket. Raises ArgumentError or Refused."""
        plan = self._registry.validate(plan_name, arguments)
        md = validate_metadata(metadata)
        with self._lock:
            if self._job is not None:
                raise Refused(
                    f"'{self._job.plan.name}' is {self.state}; "
                    "one plan at a time (Stop or Abort it first)"
                )
            if self.state == "panicked":
                raise Refused("the RunEngine is panicked; restart the IOC")
            job = _Job(next(self._tickets), plan, md)
            self._job = job
            self._interrupt = None
        self._listener(PlanAccepted(job.ticket, plan.name))
        self._commands.put(lambda: self._execute(job))
        return job.ticket

    def request_pause(self, defer: bool = False) -> None:
        """Pause now (rewinding to the last checkpoint) or at the next checkpoint."""
        state = self.state
        if state not in ("running",):
            raise Refused(f"cannot pause, the RunEngine is {state}")
        try:
            self._re.request_pause(defer=defer)
        except Exception as exc:  # TransitionError and friends: the state moved under us
            raise Refused(f"cannot pause: {exc}") from exc
        if defer:
            self._listener(StatusMessage("deferred pause requested: pausing at next checkpoint"))

    def resume(self) -> None:
        if self.state != "paused":
            raise Refused(f"cannot resume, the RunEngine is {self.state}")
        self._commands.put(self._resume)

    def stop(self) -> None:
        """End the plan with cleanup; bluesky marks the run successful."""
        self._interrupt_plan("stop", "")

    def abort(self, reason: str = "") -> None:
        """End the plan with cleanup; the run is marked aborted."""
        self._interrupt_plan("abort", reason)

    def halt(self) -> None:
        """End the plan at once, without cleanup."""
        self._interrupt_plan("halt", "")

    def shutdown(self, reason: str = "IOC shutting down", timeout: float = 10.0) -> bool:
        """Abort any plan (cleanly), wait for it, stop the thread. True if it all ended."""
        if self.busy:
            with contextlib.suppress(Refused):
                self.abort(reason)
            deadline = time.monotonic() + timeout
            while self.busy and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.busy:
                log.error("plan did not end within %.1f s of abort; halting", timeout)
                with contextlib.suppress(Refused):
                    self.halt()
        self._commands.put(None)
        self._thread.join(timeout)
        clean = not self._thread.is_alive()
        self._re.loop.call_soon_threadsafe(self._re.loop.stop)
        return clean

    def reconfigure(
        self,
        registry: Registry,
        *,
        profile_callbacks: Iterable[DocumentCallback] = (),
        suspenders: Iterable[Any] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Swap in a reloaded profile; refused while a plan is in progress."""
        with self._lock:
            if self._job is not None:
                raise Refused(f"'{self._job.plan.name}' is {self.state}; reload when idle")
            self._registry = registry
            self._install(profile_callbacks, suspenders, metadata or {})

    def _install(
        self,
        callbacks: Iterable[DocumentCallback],
        suspenders: Iterable[Any],
        metadata: Mapping[str, Any],
    ) -> None:
        for token in self._profile_tokens:
            self._re.unsubscribe(token)
        self._profile_tokens = [self._re.subscribe(callback) for callback in callbacks]
        self._re.clear_suspenders()
        for suspender in suspenders:
            self._re.install_suspender(suspender)
        for key in self._profile_metadata:
            self._re.md.pop(key, None)
        self._profile_metadata = dict(metadata)
        self._re.md.update(self._profile_metadata)

    # --------------------------------------------------------------- internals
    def _interrupt_plan(self, kind: str, reason: str) -> None:
        with self._lock:
            job = self._job
            if job is None:
                raise Refused(f"nothing to {kind}, the RunEngine is {self.state}")
            self._interrupt = (kind, reason)
            if not job.handed_over:
                return  # accepted but not started: _execute ends it without running it
        state = self._state_once_started(job)
        if state is None:
            return  # it ended meanwhile
        action: Callable[[], Any] = {
            "stop": self._re.stop,
            "abort": lambda: self._re.abort(reason),
            "halt": self._re.halt,
        }[kind]
        if state == "paused":
            # A paused RunEngine finishes the plan inside this call: do it on the worker.
            self._commands.put(lambda: self._drive(action))
            return
        try:
            action()
        except Exception as exc:
            raise Refused(f"cannot {kind}: {exc}") from exc

    def _state_once_started(self, job: _Job, timeout: float = 5.0) -> str | None:
        """The RunEngine's state once it has taken the job (it starts asynchronously)."""
        deadline = time.monotonic() + timeout
        while self._job is job:
            state = self.state
            if state != "idle" or time.monotonic() > deadline:
                return state
            time.sleep(0.001)
        return None

    def _serve(self) -> None:
        while True:
            command = self._commands.get()
            if command is None:
                return
            try:
                command()
            except Exception:  # never let the worker thread die
                log.exception("worker command failed")

    def _execute(self, job: _Job) -> None:
        self._tracker.reset()
        self._listener(StatusMessage(f"running {job.plan.name}"))
        with self._lock:
            interrupted = self._interrupt is not None
            job.handed_over = not interrupted
        if interrupted:
            self._conclude(job, *self._interrupted_outcome())
            return
        tripped = self._tripped_suspenders()
        if tripped:
            with self._suspension_lock:
                self._suspension = _Suspension(time.monotonic(), tripped, before_start=True)
            self._listener(StatusMessage(f"suspended before starting {job.plan.name}: {tripped}"))
        self._drive(lambda: self._re(job.plan.make_generator(), **job.metadata))

    def _resume(self) -> None:
        if self.state != "paused":
            self._listener(StatusMessage(f"resume ignored: the RunEngine is {self.state}"))
            return
        self._listener(StatusMessage("resuming"))
        self._drive(self._re.resume)

    def _drive(self, call: Callable[[], Any]) -> None:
        """Run a blocking RunEngine call and work out what its end means for the job."""
        job = self._job
        if job is None:
            return
        try:
            result = call()
        except RunEngineInterrupted:
            if self.state == "paused":
                self._listener(StatusMessage(f"{job.plan.name} paused: Resume, Stop or Abort"))
                return
            self._conclude(job, *self._interrupted_outcome())
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self._interrupt is not None:
                status, _ = self._interrupted_outcome()
                self._conclude(job, status, f"{self._interrupt[0]}: {message}")
            else:
                self._conclude(job, ExitStatus.FAIL, message)
        else:
            if self._interrupt is not None:
                self._conclude(job, *self._interrupted_outcome())
            else:
                exit_status = ExitStatus(str(getattr(result, "exit_status", "success")))
                reason = str(getattr(result, "reason", "") or "")
                self._conclude(job, exit_status, reason or "completed")

    def _interrupted_outcome(self) -> tuple[ExitStatus, str]:
        kind, reason = self._interrupt or ("abort", "")
        status, text = _INTERRUPT_OUTCOMES.get(kind, (ExitStatus.ABORT, kind))
        return status, f"{text}: {reason}" if reason else text

    def _conclude(self, job: _Job, status: ExitStatus, message: str) -> None:
        stop = self._tracker.last_stop
        if stop is not None and stop.get("exit_status") == "fail" and status == ExitStatus.SUCCESS:
            status = ExitStatus.FAIL
        uids = tuple(self._tracker.run_uids)
        with self._lock:
            self._job = None
            self._interrupt = None
        self._listener(PlanFinished(job.ticket, job.plan.name, status, message, uids))

    def _on_state(self, new: str, old: str) -> None:
        new, old = str(new), str(old)
        with self._suspension_lock:
            suspended = self._suspension is not None
            if new == "suspending" and not suspended:
                reason = self._tripped_suspenders() or "a suspender tripped"
                self._suspension = _Suspension(time.monotonic(), reason)
                self._listener(StatusMessage(f"suspended: {reason}"))
            if suspended:
                # bluesky waits for a tripped suspender in its 'running' state; until the plan
                # goes on, the IOC shows it as suspending
                new = "suspending" if new == "running" else new
                old = "suspending" if old == "running" else old
            if new == "idle":
                self._suspension = None
        if new != old:
            self._listener(StateChanged(new, old))

    def _on_msg(self, msg: Any) -> None:
        """Called by the RunEngine for each message: notices the end of a suspension."""
        suspension = self._suspension
        if suspension is None:
            return
        command = getattr(msg, "command", "")
        ended = command == RESUME_FROM_SUSPENDER or (
            suspension.before_start and command != "wait_for"
        )
        if not ended:
            return
        with self._suspension_lock:
            self._suspension = None
        took = time.monotonic() - suspension.since
        self._listener(StatusMessage(f"resuming after {took:.1f} s suspended"))
        if self.state == "running":
            self._listener(StateChanged("running", "suspending"))

    def _tripped_suspenders(self) -> str:
        reasons = [describe_suspender(s) for s in self._re.suspenders if getattr(s, "tripped", 0)]
        return "; ".join(reasons)
