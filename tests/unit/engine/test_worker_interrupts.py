"""Interrupts that race a pause or a resume, and a Halt that must end a plan whatever happens.

Each race is driven many times at offsets spread over 0-10 ms, at the worker level (the same
races are driven over Channel Access in tests/integration/test_interrupt_races.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky.protocols import Movable, Readable
from ophyd.positioner import SoftPositioner
from ophyd.status import Status

from runengine_ioc.engine.events import (
    ExitStatus,
    PlanFinished,
    Refused,
    RunClosed,
    StateChanged,
    StatusMessage,
)
from runengine_ioc.engine.registry import Registry
from runengine_ioc.engine.worker import RunEngineWorker
from runengine_ioc.plans import DEFAULT_PLANS, MsgGenerator
from tests.polling import wait_until

from ..conftest import MakeWorker
from .test_worker import SLOW, DocLog, EventLog, slow_count

TRIES = 50
OFFSETS = [10e-3 * i / (TRIES - 1) for i in range(TRIES)]  # 0 to 10 ms
HALT_TIMEOUT = 1.0
EXPECTED = {  # command: (ExitStatus, the stop document's exit_status)
    "stop": (ExitStatus.SUCCESS, "success"),
    "abort": (ExitStatus.ABORT, "abort"),
    "halt": (ExitStatus.ABORT, "abort"),
}


def _spin(seconds: float) -> None:
    """Let exactly ``seconds`` pass (the race's offset, not a wait for something)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class NeverArrives(SoftPositioner):
    """An axis that takes a move and never arrives, and ignores stop(), until released."""

    def __init__(self, name: str) -> None:
        self._moves: list[Status] = []
        super().__init__(name=name, init_pos=None)

    def move(self, position: float, wait: bool = False, **kwargs: Any) -> Status:
        status = Status(obj=self)
        self._moves.append(status)
        return status

    def stop(self, *, success: bool = False) -> None:
        pass

    def release(self) -> None:
        for status in self._moves:
            if not status.done:
                status.set_finished()


def stuck_cleanup(detectors: Sequence[Readable], axis: Movable, num: int = 3) -> MsgGenerator:
    """Read slowly in a run whose cleanup moves ``axis`` home (where a stuck axis hangs it)."""

    def points() -> MsgGenerator:
        for _ in range(num):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read(list(detectors))
            for _ in range(100):
                yield from bps.checkpoint()
                yield from bps.sleep(0.01)

    @bpp.run_decorator(md={"plan_name": "stuck_cleanup", "num_points": num})
    def inner() -> MsgGenerator:
        return (yield from bpp.finalize_wrapper(points(), bps.mv(axis, 0.0)))

    return (yield from inner())


@pytest.fixture
def axis() -> Any:
    stuck = NeverArrives("stuck")
    yield stuck
    stuck.release()  # the given-up RunEngine's thread ends once its move ends


@pytest.fixture
def worker_env(make_worker: MakeWorker, devices: Any, axis: Any) -> Any:
    d = devices
    registry = Registry([d.det, d.motor, axis], (*DEFAULT_PLANS, slow_count, stuck_cleanup))
    events, docs = EventLog(), DocLog()
    worker = make_worker(registry, events, callbacks=[docs], halt_timeout=HALT_TIMEOUT)
    return worker, events, docs


def _wait_after(events: EventLog, start: int, predicate: Any) -> Any:
    """The first event from index ``start`` on that satisfies ``predicate``."""
    return events.wait_for(lambda e: e in events.events[start:] and predicate(e))


def _running(event: Any) -> bool:
    return isinstance(event, StateChanged) and event.state == "running"


def _paused_line(event: Any) -> bool:
    return isinstance(event, StatusMessage) and event.text.endswith("Resume, Stop or Abort")


def _interrupt(worker: RunEngineWorker, command: str) -> int:
    return worker.abort("race") if command == "abort" else getattr(worker, command)()


def _check_ended(
    worker: RunEngineWorker, events: EventLog, docs: DocLog, ticket: int, command: str
) -> PlanFinished:
    """The plan ended, as the command says, with a stop document that agrees; nothing wedged."""
    finished = events.wait_finished(ticket)
    status, doc_status = EXPECTED[command]
    stop = docs.of("stop")[-1]
    assert stop["run_start"] == finished.run_uids[-1]
    assert stop["exit_status"] == finished.exit_status.value
    assert (finished.exit_status, stop["exit_status"]) == (status, doc_status), finished
    assert stop["num_events"].get("primary", 0) < 3  # ended early: the interrupt acted
    assert worker.state == "idle"
    assert not worker.busy
    return finished


@pytest.mark.parametrize("command", ["halt", "abort", "stop"])
def test_an_interrupt_right_after_a_pause_never_wedges_the_runengine(worker_env, command):
    worker, events, docs = worker_env
    for offset in OFFSETS:
        start = len(events.events)
        ticket = worker.submit("slow_count", SLOW, {})
        _wait_after(events, start, _running)
        worker.request_pause()  # returns once the RunEngine is pausing
        _spin(offset)
        assert _interrupt(worker, command) == ticket
        _check_ended(worker, events, docs, ticket, command)
    assert len(docs.of("stop")) == len(docs.of("start")) == TRIES


@pytest.mark.parametrize("command", ["stop", "abort", "halt"])
def test_an_interrupt_right_after_a_resume_is_not_lost(worker_env, command):
    worker, events, docs = worker_env
    for offset in OFFSETS:
        start = len(events.events)
        ticket = worker.submit("slow_count", SLOW, {})
        _wait_after(events, start, _running)
        worker.request_pause()
        _wait_after(events, start, _paused_line)
        worker.resume()
        _spin(offset)
        assert _interrupt(worker, command) == ticket
        finished = _check_ended(worker, events, docs, ticket, command)
        assert finished.message.startswith(
            {"stop": "stopped", "abort": "aborted", "halt": "halted"}[command]
        )
    assert len(docs.of("stop")) == len(docs.of("start")) == TRIES


def test_a_halt_gives_up_a_runengine_whose_cleanup_hangs_and_goes_on(worker_env, axis):
    worker, events, docs = worker_env
    ticket = worker.submit("stuck_cleanup", {"detectors": ["det"], "axis": "stuck"}, {})
    events.wait_point(1)
    worker.stop()
    events.wait_state("stopping")
    # the cleanup's move never ends: once the halt timeout has passed, State says it is stuck
    stuck = events.wait_for(lambda e: isinstance(e, StateChanged) and e.stuck)
    assert stuck == StateChanged("stopping", "stopping", stuck=True)
    assert not events.of(PlanFinished)
    with pytest.raises(Refused, match=r"cannot abort: the RunEngine is stopping; Halt ends it"):
        worker.abort()

    old_thread = worker._engine.thread
    started = time.monotonic()
    assert worker.halt() == ticket
    took = time.monotonic() - started
    assert HALT_TIMEOUT <= took < HALT_TIMEOUT + 2.0
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.ABORT
    assert "did not end the plan" in finished.message and "stopping" in finished.message
    start, stop = docs.one("start"), docs.one("stop")  # closed by the worker, exactly once
    assert (stop["run_start"], stop["exit_status"]) == (start["uid"], "abort")
    assert "given up" in stop["reason"]
    assert stop["num_events"]["primary"] >= 1
    assert events.of(RunClosed)[-1].exit_status == "abort"
    assert events.states()[-1] == "idle"
    assert worker.state == "idle" and not worker.busy

    # a fresh RunEngine runs the next plan; the scan id goes on
    next_ticket = worker.submit("count", {"detectors": ["det"], "num": 2}, {})
    assert events.wait_finished(next_ticket).exit_status is ExitStatus.SUCCESS
    assert docs.of("start")[-1]["scan_id"] == start["scan_id"] + 1
    assert docs.of("stop")[-1]["exit_status"] == "success"

    # the old RunEngine, let go at last, says nothing more (no second stop document)
    # the thread that drove it was let go and has ended; what the old RunEngine still sent
    # as its task ended (its own stop document) reached no callback
    assert old_thread is not None
    wait_until(lambda: not old_thread.is_alive(), 5.0, what="the given-up thread to end")
    assert [d["run_start"] for d in docs.of("stop")].count(start["uid"]) == 1


def test_shutdown_during_a_hung_cleanup_ends_within_the_halt_timeout(worker_env):
    worker, events, docs = worker_env
    ticket = worker.submit("stuck_cleanup", {"detectors": ["det"], "axis": "stuck"}, {})
    events.wait_point(1)
    worker.abort("cleanup will hang")
    events.wait_state("aborting")
    started = time.monotonic()
    assert worker.shutdown(reason="SIGTERM", timeout=10) is True
    assert time.monotonic() - started < HALT_TIMEOUT + 2.0
    assert events.wait_finished(ticket).exit_status is ExitStatus.ABORT
    assert docs.one("stop")["exit_status"] == "abort"


def test_halt_of_a_plan_not_yet_started_ends_it_without_a_run(worker_env):
    worker, events, docs = worker_env
    gate = threading.Event()
    worker._engine.commands.put(lambda: gate.wait(5))  # hold the worker's thread a moment
    ticket = worker.submit("slow_count", SLOW, {})
    assert worker.halt() == ticket  # the plan is ended before it ever reaches the RunEngine
    gate.set()
    assert events.wait_finished(ticket).exit_status is ExitStatus.ABORT
    assert docs.of("start") == []
