"""The RunEngine on its own thread, free of any transport.

The worker owns one :class:`bluesky.RunEngine` and runs one plan at a time on a dedicated
thread. Callers (the bridge) submit validated plans and request pause/resume/stop/abort/halt
from any thread; everything the worker has to say goes to one ``listener`` callable as
:mod:`runengine_ioc.engine.events` records. The worker knows nothing of Channel Access.

Interrupts are decided on the RunEngine's own loop (``bluesky_adapter.interrupt_on_loop``), so
no Pause or Resume completing meanwhile can strand them. A Halt is bounded: past
``halt_timeout`` s the worker gives the RunEngine up (:meth:`RunEngineWorker._give_up`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from .bluesky_adapter import (
    ENDING_STATES,
    call_on_loop,
    cancel_plan_task,
    finish_interrupted,
    interrupt_on_loop,
    plan_depth,
    release_caller,
)
from .engines import Engine, StuckWatch, Suspensions, tripped_suspenders
from .events import (
    DocumentCallback,
    ExitStatus,
    Listener,
    PlanAccepted,
    PlanFinished,
    Refused,
    StateChanged,
    StatusMessage,
    WorkerTainted,
)
from .follow_ons import FollowOns
from .jobs import FollowOnChain, Job
from .metadata import validate_metadata
from .registry import Registry
from .runs import RunTracker, plan_outcome
from .wire import DEFAULT_HALT_TIMEOUT

log = logging.getLogger(__name__)

#: Seconds a Stop or Abort waits for the RunEngine's loop to take it.
INTERRUPT_TIMEOUT = 5.0


class RunEngineWorker(FollowOns):
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
        The profile's callbacks, suspenders and start-document defaults (``RE.md``).
    scan_id_source
        Passed to the RunEngine; lets the caller persist scan ids across restarts.
    halt_timeout
        Seconds a Halt waits for the RunEngine to end the plan before giving it up.
    first_ticket
        The first plan's ticket (a restarted worker's tickets follow its predecessor's).
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
        halt_timeout: float = DEFAULT_HALT_TIMEOUT,
        first_ticket: int = 1,
    ) -> None:
        self._registry = registry
        self._listener = listener
        self._halt_timeout = halt_timeout
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._follow_ons = FollowOnChain()
        self._tickets = itertools.count(first_ticket)
        self._generations = itertools.count(1)
        self._options: dict[str, Any] = {"context_managers": [], "call_returns_result": True}
        if scan_id_source is not None:
            self._options["scan_id_source"] = scan_id_source
        self._suspensions = Suspensions(listener)
        self._stuck = StuckWatch(halt_timeout, listener, lambda: self.busy)
        self._tracker = RunTracker(listener)
        self._callbacks: list[DocumentCallback] = [self._tracker, *callbacks]
        self._profile_callbacks: list[DocumentCallback] = list(profile_callbacks)
        self._suspenders: list[Any] = list(suspenders)
        self._profile_metadata: dict[str, Any] = dict(metadata or {})
        self._engine = self._start_engine(RunEngine({}, **self._options), {})

    # ----------------------------------------------------------------- queries
    @property
    def state(self) -> str:
        return str(self._engine.re.state)

    @property
    def busy(self) -> bool:
        """True from an accepted submission until its plan has ended (paused included)."""
        with self._lock:
            return self._job is not None

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def _re(self) -> RunEngine:
        """The RunEngine in service (a fresh one after a give-up)."""
        return self._engine.re

    # ---------------------------------------------------------------- commands
    def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> int:
        """Validate and queue a plan; returns its ticket. Raises ArgumentError or Refused."""
        plan = self._registry.validate(plan_name, arguments)
        md = validate_metadata(metadata, self._registry.metadata_keys, client=False)
        with self._lock:
            if self._job is not None:
                raise Refused(
                    f"'{self._job.plan.name}' is {self.state}; "
                    "one plan at a time (Stop or Abort it first)"
                )
            if self.state == "panicked":
                raise Refused("the RunEngine is panicked; restart the IOC")
            job = Job(next(self._tickets), plan, md)
            self._job = job
            engine = self._engine
        self._listener(PlanAccepted(job.ticket, plan.name))
        engine.commands.put(lambda: self._execute(engine, job))
        return job.ticket

    def request_pause(self, defer: bool = False) -> None:
        """Pause now (rewinding to the last checkpoint) or at the next checkpoint."""
        state = self.state
        if state not in ("running",):
            raise Refused(f"cannot pause, the RunEngine is {state}")
        try:
            self._engine.re.request_pause(defer=defer)
        except Exception as exc:  # TransitionError and friends: the state moved under us
            raise Refused(f"cannot pause: {exc}") from exc
        if defer:
            self._listener(StatusMessage("deferred pause requested: pausing at next checkpoint"))

    def resume(self) -> None:
        """Let a paused plan go on; the RunEngine takes it on the worker's thread."""
        with self._lock:
            job, engine = self._job, self._engine
            state = str(engine.re.state)
            if job is None or state != "paused":
                raise Refused(f"cannot resume, the RunEngine is {state}")
            if job.resume_queued:
                raise Refused("cannot resume: a Resume is already under way")
            # from here an interrupt leaves the letting-go to this resume (see _resume_call);
            # the thread may still be returning from the pause: the resume queues behind it
            job.resume_queued = job.driving = True
        engine.commands.put(
            lambda: self._drive(engine, job, lambda: self._resume_call(engine, job))
        )

    def stop(self) -> int:
        """End the plan with cleanup; bluesky marks the run successful. The plan's ticket."""
        return self._interrupt_plan("stop", "", time.monotonic() + INTERRUPT_TIMEOUT).ticket

    def abort(self, reason: str = "") -> int:
        """End the plan with cleanup; the run is marked aborted. The plan's ticket."""
        return self._interrupt_plan("abort", reason, time.monotonic() + INTERRUPT_TIMEOUT).ticket

    def halt(self) -> int:
        """End the plan at once, without cleanup, within ``halt_timeout`` s whatever happens.

        If the RunEngine cannot (its cleanup hangs, its loop is blocked, it is already ending
        a plan and does not finish), the worker gives it up (:meth:`_give_up`). Returns the
        ticket of the plan it ended.
        """
        deadline = time.monotonic() + self._halt_timeout
        engine = self._engine
        job = self._interrupt_plan("halt", "", deadline)
        if not job.finished.wait(max(0.0, deadline - time.monotonic())):
            self._give_up(engine, job)
        return job.ticket

    def shutdown(self, reason: str = "IOC shutting down", timeout: float = 10.0) -> bool:
        """End any plan (an abort; a halt if that does not end it), stop the thread.

        A plan whose cleanup already runs (stopping, aborting) is halted at once, so a cleanup
        that hangs costs at most ``halt_timeout`` s. True if the plan ended and the thread too.
        """
        if self.busy:
            if self.state not in ENDING_STATES:
                with contextlib.suppress(Refused):
                    self.abort(reason)
                deadline = time.monotonic() + timeout
                while self.busy and time.monotonic() < deadline:
                    time.sleep(0.01)
            if self.busy:
                log.error("plan still %s at shutdown; halting", self.state)
                with contextlib.suppress(Refused):
                    self.halt()
        self._stuck.cancel()
        engine = self._engine
        engine.commands.put(None)
        if engine.thread is not None:
            engine.thread.join(timeout)
        clean = engine.thread is None or not engine.thread.is_alive()
        engine.re.loop.call_soon_threadsafe(engine.re.loop.stop)
        return clean and not self.busy

    # ------------------------------------------------------------ the engines
    def _start_engine(self, re: RunEngine, old_metadata: Mapping[str, Any]) -> Engine:
        """Hook a RunEngine up (documents, state, profile) and start its driving thread."""
        engine = Engine(next(self._generations), re)
        re.state_hook = lambda new, old: self._on_state(engine, new, old)  # type: ignore[assignment]
        re.msg_hook = lambda msg: self._on_msg(engine, msg)  # type: ignore[assignment]
        for callback in self._callbacks:
            re.subscribe(engine.gated(callback))
        engine.install_profile(
            self._profile_callbacks, self._suspenders, self._profile_metadata, old_metadata
        )
        engine.thread = threading.Thread(
            target=self._serve, args=(engine,), name="runengine-worker", daemon=True
        )
        engine.thread.start()
        return engine

    def _give_up(self, engine: Engine, job: Job) -> None:
        """Leave a RunEngine that did not end the plan; close its runs; start a fresh one.

        The old thread is let go of its RunEngine call and ends; the plan's task is cancelled
        (if its cleanup hangs again, or the loop is blocked, it stays, with that loop's daemon
        thread) and nothing it says or sends from then on reaches the listener or a callback.
        Each run left open gets a stop document (``abort``, with the reason) through the same
        callbacks, the plan is reported finished, and plans run on a fresh RunEngine (on the
        same event loop if that still answers, so that devices bound to it keep working; on a
        new one otherwise).
        """
        got_docs = engine.docs_lock.acquire(timeout=1.0)  # not in the middle of a document
        try:
            with self._lock:
                if job is not self._job or engine is not self._engine:
                    return  # it ended meanwhile
                engine.abandoned = True
                stuck_in = str(engine.re.state)
        finally:
            if got_docs:
                engine.docs_lock.release()
        self._stuck.cancel()
        why = (
            f"halted, but the RunEngine did not end the plan within {self._halt_timeout:.1f} s "
            f"(it was {stuck_in}): given up"
        )
        log.error("%s; its thread is left behind, a fresh RunEngine takes over", why)
        old = engine.re
        release_caller(old)  # its thread comes back, sees it was given up, and ends
        cancel_plan_task(old)  # best effort: its task ends too, unless it hangs again
        with contextlib.suppress(Exception):
            old.clear_suspenders()  # they hold the old RunEngine
        new_engine = self._start_engine(engine.successor(self._options), {})
        closing = self._tracker.closing_documents("abort", why)
        for doc in closing:
            for callback in (*self._callbacks, *self._profile_callbacks):
                try:
                    callback("stop", doc)
                except Exception:
                    log.exception("closing run %s: a callback failed", doc["run_start"])
        with self._lock:
            self._engine = new_engine
        self._suspensions.clear()
        self._listener(StateChanged("idle", stuck_in))
        # ExitStatus agrees with the last stop document: ours, or the plan's own if its runs
        # were all closed before the cleanup hung
        last = self._tracker.last_stop
        status = ExitStatus.ABORT
        if not closing and last is not None and last.get("exit_status") in ("success", "fail"):
            status = ExitStatus(last["exit_status"])
        self._finish(job, status, f"{why}; a fresh RunEngine is in service")
        self._listener(WorkerTainted(why))  # the threads left behind go with the process

    def _serve(self, engine: Engine) -> None:
        while not engine.abandoned:  # a given-up thread that comes back ends here
            command = engine.commands.get()
            if command is None:
                break
            try:
                command()
            except Exception:  # never let the worker thread die
                log.exception("worker command failed")
        if engine.abandoned and engine.re.loop is not self._engine.re.loop:
            engine.re.loop.call_soon_threadsafe(engine.re.loop.stop)

    # -------------------------------------------------------------- interrupts
    def _interrupt_plan(self, kind: str, reason: str, deadline: float) -> Job:
        """Interrupt the plan in progress; the job it acted on. Raises Refused if it cannot.

        A Halt never raises once there is a plan: what it could not do now, the deadline and
        :meth:`_give_up` settle.
        """
        with self._lock:
            job, engine = self._job, self._engine
            if job is None:
                raise Refused(f"nothing to {kind}, the RunEngine is {self.state}")
            if not job.handed_over:
                job.interrupt = (kind, reason)
                return job  # accepted but not started: _execute ends it without running it
            previous, job.interrupt = job.interrupt, (kind, reason)
        while not job.finished.is_set():
            left = deadline - time.monotonic()
            try:
                was_paused = interrupt_on_loop(
                    engine.re,
                    kind,
                    reason,
                    max(left, 0.05),
                    lambda paused: job.may_act(engine, paused),
                )
            except Exception as exc:
                state = str(engine.re.state)
                # idle: handed over but not started yet (or just ended); pausing: a Stop must
                # wait for the pause to settle. Both last moments: try again.
                if state in ("idle", "pausing") and left > 0 and not isinstance(exc, TimeoutError):
                    time.sleep(0.001)
                    continue
                with self._lock:
                    if job.interrupt == (kind, reason):
                        job.interrupt = previous
                if kind == "halt" or job.finished.is_set():
                    return job
                why = str(exc) if isinstance(exc, TimeoutError) else f"the RunEngine is {state}"
                hint = (
                    "; Halt ends it"
                    if state in ENDING_STATES or isinstance(exc, TimeoutError)
                    else ""
                )
                raise Refused(f"cannot {kind}: {why}{hint}") from exc
            if was_paused is None:  # a resume is rewinding the plan: a moment more
                if time.monotonic() < deadline:
                    time.sleep(0.001)
                    continue
                if kind == "halt":
                    return job
                raise Refused(f"cannot {kind}: the plan is resuming; try again")
            self._listener(StatusMessage(f"{kind} requested"))
            with self._lock:
                if was_paused and job is self._job and not job.driving:
                    # the plan's task waits to be let go on to its end: the worker's thread does it
                    job.driving = True
                    engine.commands.put(
                        lambda: self._drive(engine, job, lambda: finish_interrupted(engine.re))
                    )
            break
        return job

    # ---------------------------------------------------------------- driving
    def _execute(self, engine: Engine, job: Job) -> None:
        self._tracker.reset()
        self._listener(StatusMessage(f"running {job.plan.name}"))
        with self._lock:
            interrupted = job.interrupt is not None
            job.handed_over = job.driving = not interrupted
        if interrupted:
            self._finish(job, *plan_outcome(job.interrupt, None, None, self._tracker.last_stop))
            return
        tripped = tripped_suspenders(self._engine.re)
        if tripped:
            self._suspensions.before_start(tripped, job.plan.name)
        self._drive(engine, job, lambda: engine.re(self._one_call(engine, job), **job.metadata))

    def _resume_call(self, engine: Engine, job: Job) -> Any:
        re = engine.re
        with self._lock:
            job.resume_queued = False

        def claim() -> bool:  # on the loop, so no interrupt slips in between
            if str(re.state) == "paused" and not job.taken_while_paused:
                job.resuming, job.resume_depth = True, plan_depth(re)
            return job.resuming

        if not call_on_loop(re, claim, INTERRUPT_TIMEOUT):
            # a Stop/Abort/Halt came between the Resume and now: it ends the plan
            return finish_interrupted(re)
        self._listener(StatusMessage("resuming"))
        return re.resume()

    def _drive(self, engine: Engine, job: Job, call: Callable[[], Any]) -> None:
        """Run a blocking RunEngine call, then see the plan to its end or to a pause."""
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
        except RunEngineInterrupted:
            pass
        except Exception as exc:
            error = exc
        with self._lock:  # a plan that followed within the call is the one it ended with
            if self._job is not None and self._job.ticket > job.ticket:
                job = self._job
        while not engine.abandoned:
            with self._lock:
                state = str(engine.re.state)
                if state == "paused":
                    job.driving = job.resume_queued  # a Resume queued meanwhile drives it on
                    job.resuming = False  # paused again (even mid-replay): interrupts may act
                    break
            if state not in ENDING_STATES:
                self._finish(
                    job,
                    *plan_outcome(job.interrupt, error, result, self._tracker.last_stop),
                    engine=engine,
                )
                return
            # an interrupt was taken while the plan was paused: its task waits to be let go on
            try:
                result = finish_interrupted(engine.re)
            except Exception as exc:
                error = exc
        if not engine.abandoned:
            self._listener(StatusMessage(f"{job.plan.name} paused: Resume, Stop or Abort"))

    def _finish(
        self, job: Job, status: ExitStatus, message: str, engine: Engine | None = None
    ) -> None:
        """The job is over: free the worker and say so (once; never for a given-up engine).

        The first plan handed over (:meth:`submit_after`) starts now if the job ended in
        success on its own (no Stop, Abort or Halt); else it and those after it are dropped.
        """
        uids = tuple(self._tracker.run_uids)
        follow_on: Job | None = None
        with self._lock:
            if job is not self._job or (engine is not None and engine.abandoned):
                return
            if engine is not None:
                follow_on = self._follow_ons.next_after(job, status)
            else:
                self._follow_ons.withdraw()  # a given-up RunEngine: nothing follows
            self._job = follow_on
            job.finished.set()
        next_ticket = follow_on.ticket if follow_on is not None else None
        self._listener(
            PlanFinished(job.ticket, job.plan.name, status, message, uids, followed_by=next_ticket)
        )
        if follow_on is not None and engine is not None:
            self._listener(PlanAccepted(follow_on.ticket, follow_on.plan.name))
            engine.commands.put(lambda: self._execute(engine, follow_on))

    # ------------------------------------------------------------------ hooks
    def _on_state(self, engine: Engine, new: str, old: str) -> None:
        if engine.abandoned:
            return
        new, old = str(new), str(old)
        if new in ENDING_STATES and old not in ENDING_STATES:
            self._stuck.arm(engine, new)
        elif new not in ENDING_STATES:
            self._stuck.cancel()
        new, old = self._suspensions.on_state(new, old, lambda: tripped_suspenders(self._engine.re))
        if new != old:
            self._listener(StateChanged(new, old))

    def _on_msg(self, engine: Engine, msg: Any) -> None:
        if not engine.abandoned:
            self._suspensions.on_msg(msg, lambda: str(engine.re.state))
