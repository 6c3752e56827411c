"""The IOC's side of the worker process: start it, restart it, replace it on Reload.

:class:`Supervisor` is the bridge's :class:`~.commands.Worker` (blocking calls, made off the
event loop) and the view's :class:`~.catalog.Checker`. It owns one
:class:`~.remote.WorkerProcess` at a time and watches it: a worker that dies, stops answering
for ``worker_timeout`` s, or grows past ``memory_limit_mb`` is ended and replaced, and the plan
it was running is closed as the RunEngine would have closed it: its run file gets a stop
document (``exit_status`` fail, the reason), the IOC is told the run closed and the plan
finished, State returns to idle, and :class:`~.events.WorkerRestarted` says why with a count.
A Reload starts a second worker with the profile read anew and swaps to it only once it is
ready, so a profile that fails, exits or hangs never touches the worker in service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import Any

from .catalog import RegistryDescription, RegistryView, ServedProfile
from .cut_plans import CutRunCloser, events_for_a_cut_plan
from .events import (
    Coalesced,
    Listener,
    PlanAccepted,
    PlanFinished,
    Refused,
    RunClosed,
    RunOpened,
    SinkHealth,
    StateChanged,
    StatusMessage,
    WorkerEvent,
    WorkerRestarted,
    WorkerTainted,
)
from .profile import ProfileError
from .remote import WorkerGone, WorkerProcess
from .wire import Ready, WorkerConfig

log = logging.getLogger(__name__)

#: Seconds without an answer to a ping before the worker counts as wedged (--worker-timeout).
DEFAULT_WORKER_TIMEOUT = 20.0
#: Seconds a starting worker has to load the profile (--worker-start-timeout).
DEFAULT_READY_TIMEOUT = 120.0
#: Seconds the worker has to answer anything but a plan's own commands.
REQUEST_TIMEOUT = 10.0
#: Tickets of successive workers never meet: each generation starts this far on.
TICKETS_PER_GENERATION = 10**9
#: How often a worker waiting to be replaced looks for a moment with no plan.
RECYCLE_POLL = 0.2
#: Pause between attempts to start a worker that failed to start after a restart.
RETRY_PAUSE = 5.0


def _was_ready(process: WorkerProcess) -> bool:
    return process.ready.done() and process.ready.exception() is None


def default_memory_limit_mb() -> float:
    """Half of the machine's memory: a runaway plan is ended long before the OOM killer."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2e6
    except (ValueError, OSError):
        return 0.0


class Supervisor:
    """Runs the worker process and stands in for it toward the bridge.

    Parameters
    ----------
    config
        What every worker gets (the profile, the data directory, the sinks...).
    listener
        The bridge's listener: every event of the worker in service, and those this
        supervisor makes when a worker ends in the middle of a plan.
    close_cut_run
        Writes the stop document of a run whose worker died (the local files are the IOC's).
    worker_timeout
        Seconds without an answer to a ping after which the worker counts as wedged.
    memory_limit_mb
        Resident memory past which the worker is ended (0: no limit).
    ready_timeout
        Seconds a starting worker (start-up, restart, Reload) has to load the profile.
    """

    def __init__(
        self,
        config: WorkerConfig,
        listener: Listener,
        *,
        close_cut_run: CutRunCloser | None = None,
        worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
        memory_limit_mb: float = 0.0,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self._listener = listener
        self._close_cut_run = close_cut_run
        self.worker_timeout = worker_timeout
        self.memory_limit_mb = memory_limit_mb
        self.ready_timeout = ready_timeout
        self._env = env
        self._lock = threading.Lock()
        self._generation = 0
        self._current: WorkerProcess | None = None
        self._ready = False
        self._stopping = False
        self._reloading = False
        self._submitting = 0  # submits on their way to the worker (no swap meanwhile)
        self._sink_health: SinkHealth | None = None  # the last report of the worker in service
        self._dropped_before = 0  # documents dropped by the sinks of earlier workers
        self._description: RegistryDescription | None = None  # the registry in service
        self.restarts = 0
        # what the worker in service is doing, read from its events as they pass
        self._state = "idle"
        self._plan: PlanAccepted | None = None
        self._follow_on_names: dict[int, str] = {}  # plans handed over to follow, by ticket
        self._run: RunOpened | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ start
    def _spawn(self, config: WorkerConfig) -> WorkerProcess:
        with self._lock:
            self._generation += 1
            generation = self._generation
        config = dataclasses.replace(config, first_ticket=generation * TICKETS_PER_GENERATION + 1)
        process = WorkerProcess(
            config, self._on_event, self._on_exit, generation=generation, env=self._env
        )
        process.start()
        log.info("worker process %s started (generation %d)", process.pid, generation)
        return process

    async def _await_ready(self, process: WorkerProcess) -> Ready:
        """The worker's Ready; ProfileError (it is ended) if it fails or takes too long."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(process.ready), self.ready_timeout)
        except asyncio.TimeoutError:
            process.kill(f"it did not load the profile within {self.ready_timeout:g} s")
            raise ProfileError(
                f"the profile did not load within {self.ready_timeout:g} s (a hang?)"
            ) from None
        except WorkerGone as exc:  # it said why and exits (or has died): see that it is gone
            if await asyncio.to_thread(process.wait_exit, 5.0) is None:
                process.kill(str(exc))
            raise ProfileError(str(exc)) from None

    def _served(self, ready: Ready, on_applied: Any = None) -> ServedProfile:
        return ServedProfile(
            RegistryView(ready.registry, self),
            ready.description,
            ready.access_policy,
            dict(ready.access_groups),
            on_applied,
        )

    async def start(self) -> ServedProfile:
        """Start the first worker and wait until it is ready; ProfileError if it cannot be."""
        self._loop = asyncio.get_running_loop()
        process = self._spawn(self.config)
        with self._lock:
            self._current = process
        ready = await self._await_ready(process)
        self._ready = True
        self._description = ready.registry
        return self._served(ready)

    async def load_new(self) -> ServedProfile:
        """Reload: a new worker reads the profile anew; swapped in by ``on_applied``.

        ProfileError (the worker in service untouched) if the new one fails, exits or hangs.
        Plans are refused from here until the swap or the failure.
        """
        if self._reloading:
            raise Refused("a Reload is already under way")
        self._reloading = True
        try:
            process = self._spawn(self.config)
            ready = await self._await_ready(process)
        except BaseException:
            self._reloading = False
            raise

        async def swap() -> None:
            try:
                await self._swap(process, ready, "replaced by a Reload")
            except Refused:
                process.kill("a plan started while the profile loaded")
                raise Refused(
                    "a plan started while the profile loaded; the previous profile stays in service"
                ) from None
            finally:
                self._reloading = False

        return self._served(ready, swap)

    async def _swap(self, process: WorkerProcess, ready: Ready, reason: str) -> None:
        """Put a ready worker in service and retire the old one; Refused (nothing changed) if
        a plan is in progress or on its way to the old one."""
        with self._lock:
            if self._plan is not None or self._submitting:
                raise Refused("a plan is in progress")
            old, self._current = self._current, process
            self._state, self._plan, self._run = "idle", None, None
            self._description = ready.registry
        self._count_dropped_so_far()
        if process.sink_health is not None:  # Sinks:Status shows the new worker's sinks
            self._sink_health = process.sink_health
            self._listener(self._with_earlier_drops(process.sink_health))
        if old is not None:
            await asyncio.to_thread(self._retire, old, reason)

    async def _recycle(self, reason: str) -> None:
        """Replace a worker that gave a RunEngine up, once idle, with the same profile.

        Plans are not refused meanwhile: the swap waits for a moment with none in progress.
        If the profile on disk has changed (another registry), the worker stays until Reload.
        """
        while not self._stopping:
            while self.busy or self._submitting or not self._ready or self._reloading:
                await asyncio.sleep(RECYCLE_POLL)
                if self._stopping:
                    return
            process = self._spawn(self.config)
            try:
                ready = await self._await_ready(process)
            except ProfileError as exc:
                log.error("replacing the worker after %s failed: %s", reason, exc)
                return
            if ready.registry != self._description:
                process.kill("the profile on disk has changed")
                self._listener(
                    StatusMessage(
                        "the worker keeps its threads left behind: the profile on "
                        "disk has changed; Reload to replace it"
                    )
                )
                return
            try:
                await self._swap(process, ready, "replaced: it had given a RunEngine up")
            except Refused:
                process.kill("a plan started before the swap")
                continue
            log.info("worker process %s in service (after %s)", process.pid, reason)
            return

    @property
    def worker_pid(self) -> int | None:
        process = self._current
        return process.pid if process is not None else None

    def _retire(self, process: WorkerProcess, reason: str) -> None:
        """End a worker that is no longer in service: cleanly if it can, else killed."""
        with contextlib.suppress(Refused):
            process.request("shutdown", reason, 5.0, timeout=15.0)
        if process.wait_exit(5.0) is None:
            process.kill(f"{reason}; it did not exit")

    # ----------------------------------------------------------------- events
    def _on_event(self, process: WorkerProcess, event: WorkerEvent | Coalesced) -> None:
        if process is not self._current:
            if isinstance(event, SinkHealth):  # a loading worker's sinks: shown at its swap
                process.sink_health = event
            return  # else a retired worker's last words
        if isinstance(event, SinkHealth):
            self._sink_health = event
            event = self._with_earlier_drops(event)
        if isinstance(event, WorkerTainted):
            self._on_loop(self._recycle(event.reason))
            return
        if isinstance(event, StateChanged):
            self._state = event.state
        elif isinstance(event, PlanAccepted):
            self._plan = event
        elif isinstance(event, RunOpened):
            self._run = event
        elif isinstance(event, RunClosed):
            self._run = None
        elif (
            isinstance(event, PlanFinished)
            and self._plan is not None
            and self._plan.ticket == event.ticket
        ):
            # a plan handed over to follow it is in progress from this moment (no gap in
            # which the worker would look idle; its PlanAccepted comes next)
            self._plan = None
            if event.followed_by is None:  # any plans handed over after it are dropped
                self._follow_on_names.clear()
            else:
                name = self._follow_on_names.pop(event.followed_by, "")
                self._plan = PlanAccepted(event.followed_by, name)
        self._listener(event)

    def _count_dropped_so_far(self) -> None:
        """A worker leaves service: what its sinks dropped stays counted (Sinks:Dropped is
        since the IOC started, not since this worker did)."""
        if self._sink_health is not None:
            self._dropped_before += self._sink_health.undelivered
            self._sink_health = None

    def _with_earlier_drops(self, health: SinkHealth) -> SinkHealth:
        return dataclasses.replace(health, undelivered=health.undelivered + self._dropped_before)

    def _on_exit(self, process: WorkerProcess, code: int | None) -> None:
        if process is not self._current or self._stopping or not _was_ready(process):
            return  # retired, shutting down, or never ready (whoever waits for it is told)
        reason = process.kill_reason or "the worker process ended"
        log.error("worker process %s: %s", process.pid, reason)
        self._count_dropped_so_far()
        self._ready = False
        self.restarts += 1
        plan, run, state = self._plan, self._run, self._state
        self._plan, self._run, self._state = None, None, "idle"
        self._follow_on_names.clear()  # the new worker has none of them
        for event in events_for_a_cut_plan(plan, run, state, reason, self._close_cut_run):
            self._listener(event)
        self._listener(WorkerRestarted(self.restarts, reason))
        self._on_loop(self._restart())

    def _on_loop(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine on the IOC's loop, from a reader thread; dropped once it has ended."""
        if self._loop is None or self._loop.is_closed():
            work.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(work, self._loop)
        except RuntimeError:  # the loop closed meanwhile: the IOC is ending
            work.close()

    async def _restart(self) -> None:
        """Start a worker in place of the one that ended, until one is ready."""
        while not self._stopping:
            process = self._spawn(self.config)
            with self._lock:
                self._current = process
            try:
                ready = await self._await_ready(process)
            except ProfileError as exc:
                log.error("the new worker could not start: %s; trying again", exc)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            self._ready = True
            if ready.registry != self._description:
                self._listener(
                    StatusMessage(
                        "the restarted worker read a changed profile (edited on disk?): "
                        "Reload to serve its plans"
                    )
                )
            self._listener(
                StatusMessage(f"worker ready again after restart {self.restarts}; plans may start")
            )
            return

    # -------------------------------------------------------------- watchdog
    async def watch(self, period: float = 1.0) -> None:
        """Until cancelled: end a worker that stops answering or outgrows its memory."""
        while True:
            await asyncio.sleep(period)
            process = self._current
            if process is None or not self._ready or process.gone.is_set():
                continue
            rss = process.rss_mb()
            if self.memory_limit_mb and rss is not None and rss > self.memory_limit_mb:
                process.kill(
                    f"the worker used {rss:.0f} MB, over its limit of "
                    f"{self.memory_limit_mb:.0f} MB (--worker-memory-mb)"
                )
                continue
            try:
                await process.arequest("ping", timeout=self.worker_timeout)
            except WorkerGone:
                continue
            except Refused:
                if process is self._current and not process.gone.is_set():
                    process.kill(
                        f"the worker did not answer for {self.worker_timeout:g} s "
                        "(--worker-timeout): wedged"
                    )

    # ----------------------------------------------------- the Worker protocol
    def _process(self) -> WorkerProcess:
        process = self._current
        if process is None or not self._ready:
            raise Refused("the worker is restarting; try again in a moment")
        return process

    @property
    def state(self) -> str:
        """The RunEngine's state; Refused while no worker is ready (the Heartbeat stops)."""
        if not self._ready:
            raise Refused("the worker is restarting")
        return self._state

    @property
    def busy(self) -> bool:
        return self._plan is not None

    def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> int:
        if self._reloading:
            raise Refused("a Reload is under way; start the plan when it has finished")
        with self._lock:
            process = self._process()
            self._submitting += 1
        try:
            ticket: int = process.request(
                "submit", plan_name, dict(arguments), dict(metadata), timeout=REQUEST_TIMEOUT
            )
        finally:
            with self._lock:
                self._submitting -= 1
        return ticket

    def submit_after(
        self,
        ticket: int,
        plan_name: str,
        arguments: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> int | None:
        if self._reloading:
            raise Refused("a Reload is under way; start the plan when it has finished")
        follow_on: int | None = self._process().request(
            "submit_after", ticket, plan_name, dict(arguments), dict(metadata),
            timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        if follow_on is not None:
            self._follow_on_names[follow_on] = plan_name
        return follow_on

    def cancel_follow_ons(self) -> list[int]:
        withdrawn: list[int] = self._process().request("cancel_follow_ons", timeout=REQUEST_TIMEOUT)
        for ticket in withdrawn:
            self._follow_on_names.pop(ticket, None)
        return withdrawn

    def request_pause(self, defer: bool = False) -> None:
        self._process().request("pause", defer, timeout=REQUEST_TIMEOUT)

    def resume(self) -> None:
        self._process().request("resume", timeout=REQUEST_TIMEOUT)

    def stop(self) -> int | None:
        result: int | None = self._process().request("stop", timeout=REQUEST_TIMEOUT)
        return result

    def abort(self, reason: str = "") -> int | None:
        result: int | None = self._process().request("abort", reason, timeout=REQUEST_TIMEOUT)
        return result

    def halt(self) -> int | None:
        """End the plan at once; if the whole worker is stuck, end the worker."""
        process = self._process()
        plan = self._plan
        limit = self.config.halt_timeout + 5.0
        try:
            result: int | None = process.request("halt", timeout=limit)
            return result
        except WorkerGone:
            return plan.ticket if plan is not None else None
        except Refused as exc:
            if "did not answer" not in str(exc):
                raise
            process.kill(f"Halt: the worker did not end the plan within {limit:g} s")
            return plan.ticket if plan is not None else None

    def shutdown(self, reason: str = "IOC shutting down", timeout: float = 10.0) -> bool:
        """End any plan cleanly, let the worker close its sinks and files, end it."""
        self._stopping = True
        process = self._current
        if process is None:
            return True
        clean = False
        try:
            clean = bool(process.request("shutdown", reason, timeout, timeout=timeout + 5.0))
        except Refused as exc:
            log.error("the worker's shutdown: %s", exc)
        if process.wait_exit(5.0) is None:
            process.kill("it did not exit after its shutdown")
            clean = False
        return clean

    # ------------------------------------------------------- the view's Checker
    async def validate(self, plan_name: str, arguments: Mapping[str, Any]) -> None:
        await self._process().arequest(
            "validate", plan_name, dict(arguments), timeout=REQUEST_TIMEOUT
        )

    async def check_argument(
        self, plan_name: str, parameter: str, value: Any, others: Mapping[str, Any]
    ) -> None:
        await self._process().arequest(
            "check_argument", plan_name, parameter, value, dict(others), timeout=REQUEST_TIMEOUT
        )
