"""The RunEngine worker on its own thread, observed through its listener (no Channel Access)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky.protocols import Readable

from runengine_ioc.engine.events import (
    ExitStatus,
    PlanAccepted,
    PlanFinished,
    Progress,
    Refused,
    RunClosed,
    RunOpened,
    StateChanged,
    StatusMessage,
)
from runengine_ioc.engine.metadata import RESERVED_METADATA_KEYS
from runengine_ioc.engine.registry import ArgumentError, Registry
from runengine_ioc.engine.worker import RunEngineWorker
from runengine_ioc.plans import DEFAULT_PLANS, MsgGenerator
from tests.polling import wait_until

from ..conftest import MakeWorker

TIMEOUT = 10.0

# -- plans that exist only for these tests -------------------------------------------------


def slow_count(
    detectors: Sequence[Readable], num: int = 3, ticks: int = 5, tick: float = 0.01
) -> MsgGenerator:
    """Read the detectors ``num`` times, sleeping ``ticks`` x ``tick`` s after each point.

    Every sleep follows a checkpoint, so a pause lands quickly and a rewind replays no reading.
    """

    @bpp.run_decorator(md={"plan_name": "slow_count", "num_points": num})
    def inner() -> MsgGenerator:
        for _ in range(num):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read(list(detectors))
            for _ in range(ticks):
                yield from bps.checkpoint()
                yield from bps.sleep(tick)

    return (yield from inner())


def fail_after(detectors: Sequence[Readable], points: int = 2) -> MsgGenerator:
    """Read the detectors ``points`` times, then raise."""

    @bpp.run_decorator(md={"plan_name": "fail_after"})
    def inner() -> MsgGenerator:
        for _ in range(points):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read(list(detectors))
        raise RuntimeError(f"detector on fire after {points} points")

    return (yield from inner())


# -- what the worker says, collected thread-safely -----------------------------------------


class EventLog:
    """The worker's listener: records every event with ``busy`` as it was when it arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[tuple[Any, bool | None]] = []
        self.probe: Callable[[], bool] | None = None

    def __call__(self, event: Any) -> None:
        busy = self.probe() if self.probe is not None else None
        with self._lock:
            self._records.append((event, busy))

    @property
    def records(self) -> list[tuple[Any, bool | None]]:
        with self._lock:
            return list(self._records)

    @property
    def events(self) -> list[Any]:
        return [event for event, _ in self.records]

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def states(self) -> list[str]:
        return [event.state for event in self.of(StateChanged)]

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
        """The first event that satisfies ``predicate``, once there is one."""
        return wait_until(
            lambda: next((event for event in self.events if predicate(event)), None),
            timeout,
            interval=0.002,
            what=f"an event satisfying {predicate}; got {self.events}",
        )

    def wait_state(self, state: str) -> StateChanged:
        return self.wait_for(lambda e: isinstance(e, StateChanged) and e.state == state)

    def wait_point(self, point: int) -> Progress:
        return self.wait_for(lambda e: isinstance(e, Progress) and e.current_point >= point)

    def wait_finished(self, ticket: int) -> PlanFinished:
        return self.wait_for(lambda e: isinstance(e, PlanFinished) and e.ticket == ticket)

    def after(self, event: Any) -> list[Any]:
        """The events that came after ``event`` (compared by identity)."""
        events = self.events
        index = next(i for i, e in enumerate(events) if e is event)
        return events[index + 1 :]


class DocLog:
    """A document callback for the RunEngine: records (name, doc) thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._docs.append((name, doc))

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for kind, doc in self._docs if kind == name]

    def one(self, name: str) -> dict[str, Any]:
        (doc,) = self.of(name)
        return doc


def _threads_named(name: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == name}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def registry(devices: SimpleNamespace) -> Registry:
    d = devices
    return Registry([d.det, d.det1, d.motor, d.motor1], (*DEFAULT_PLANS, slow_count, fail_after))


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def docs() -> DocLog:
    return DocLog()


@pytest.fixture
def worker(make_worker: MakeWorker, registry: Registry, events: EventLog, docs: DocLog):
    w = make_worker(registry, events, callbacks=[docs])
    events.probe = lambda: w.busy
    return w


COUNT = {"detectors": ["det"], "num": 3}
SCAN = {"detectors": ["det"], "motor": "motor", "start": 0, "stop": 2, "num": 3}
SLOW = {"detectors": ["det"], "num": 3, "ticks": 100, "tick": 0.01}  # ~3 s unless interrupted
SHORT_SLOW = {"detectors": ["det"], "num": 3, "ticks": 20, "tick": 0.01}  # ~0.6 s


def _runs_to_success(worker: RunEngineWorker, events: EventLog, docs: DocLog) -> None:
    """A quick count runs to completion: the worker took up work again."""
    starts_before = len(docs.of("start"))
    ticket = worker.submit("count", {"detectors": ["det"], "num": 1}, {})
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.SUCCESS, finished
    assert len(docs.of("start")) == starts_before + 1
    assert docs.of("stop")[-1]["exit_status"] == "success"
    assert worker.state == "idle"
    assert not worker.busy


# -- a plan runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "arguments"), [("count", COUNT), ("scan", SCAN)])
def test_a_plan_runs_and_reports_acceptance_states_run_progress_and_finish(
    worker, events, docs, plan, arguments
):
    ticket = worker.submit(plan, arguments, {})
    assert worker.busy
    finished = events.wait_finished(ticket)

    start, stop = docs.one("start"), docs.one("stop")
    assert events.of(PlanAccepted) == [PlanAccepted(ticket, plan)]
    assert events.states() == ["running", "idle"]
    assert events.of(StateChanged) == [
        StateChanged("running", "idle"),
        StateChanged("idle", "running"),
    ]
    (opened,) = events.of(RunOpened)
    assert opened.uid == start["uid"]
    assert opened.plan_name == plan
    assert opened.total_points == 3
    assert opened.scan_id == start["scan_id"] >= 1
    assert opened.start_time == start["time"]
    progress = events.of(Progress)
    assert [p.current_point for p in progress] == [1, 2, 3]
    assert all(p.total_points == 3 and p.start_time == start["time"] for p in progress)
    assert events.of(RunClosed) == [RunClosed(start["uid"], "success", "", 3)]
    assert stop["num_events"] == {"primary": 3}
    assert finished == PlanFinished(ticket, plan, ExitStatus.SUCCESS, "completed", (start["uid"],))

    kinds = [type(e) for e in events.events if not isinstance(e, Progress)]
    assert kinds == [
        PlanAccepted,
        StatusMessage,  # "running <plan>"
        StateChanged,
        RunOpened,
        RunClosed,
        StateChanged,
        PlanFinished,
    ]
    # busy from the acceptance until the plan has finished, not a moment longer
    busy_before_finish = [busy for e, busy in events.records if not isinstance(e, PlanFinished)]
    assert busy_before_finish and all(busy_before_finish)
    assert not worker.busy
    assert worker.state == "idle"


def test_plans_get_increasing_tickets_and_scan_ids(worker, events):
    first = worker.submit("count", {"detectors": ["det"]}, {})
    events.wait_finished(first)
    second = worker.submit("count", {"detectors": ["det"]}, {})
    events.wait_finished(second)
    assert second == first + 1
    opened = events.of(RunOpened)
    assert [o.scan_id for o in opened] == [opened[0].scan_id, opened[0].scan_id + 1]


def test_worker_metadata_and_scan_id_source_reach_the_start_document(make_worker, registry, docs):
    events = EventLog()
    worker = make_worker(
        registry,
        events,
        callbacks=[docs],
        metadata={"beamline": "BL-T"},
        scan_id_source=lambda md: 41,
    )
    events.wait_finished(worker.submit("count", {"detectors": ["det"]}, {}))
    start = docs.one("start")
    assert start["beamline"] == "BL-T"
    assert start["scan_id"] == 41
    assert events.of(RunOpened)[0].scan_id == 41


def test_a_plan_without_a_run_finishes_successfully_without_opening_one(
    worker, events, docs, devices
):
    ticket = worker.submit("mv", {"device": "motor", "position": 2.5}, {})
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.SUCCESS
    assert finished.run_uids == ()
    assert events.of(RunOpened) == events.of(RunClosed) == events.of(Progress) == []
    assert docs.of("start") == []
    assert devices.motor.position == pytest.approx(2.5)


# -- refusals at submission ----------------------------------------------------------------


@pytest.mark.parametrize("state", ["running", "paused"])
def test_submit_while_a_plan_is_running_or_paused_is_refused_and_the_plan_goes_on(
    worker, events, docs, state
):
    ticket = worker.submit("slow_count", SHORT_SLOW, {})
    events.wait_point(1)
    if state == "paused":
        worker.request_pause()
        events.wait_state("paused")

    with pytest.raises(Refused, match=r"'slow_count' is .*one plan at a time"):
        worker.submit("count", COUNT, {})

    assert worker.busy
    if state == "paused":
        worker.resume()
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.SUCCESS
    assert events.of(PlanAccepted) == [PlanAccepted(ticket, "slow_count")]
    assert [p.current_point for p in events.of(Progress)] == [1, 2, 3]
    assert docs.one("stop")["num_events"] == {"primary": 3}
    assert [s["plan_name"] for s in docs.of("start")] == ["slow_count"]


@pytest.mark.parametrize(
    ("plan", "arguments", "message"),
    [
        ("nope", {}, "unknown plan 'nope'"),
        ("count", {"detectors": ["ghost"]}, "unknown device 'ghost'"),
        ("count", {"detectors": ["det"], "num": 0}, "num"),
        ("count", {"detectors": ["det"], "bogus": 1}, "bogus"),
        ("scan", {"detectors": ["det"], "motor": "motor", "start": 0, "stop": 1}, "num"),
        ("count", ["det"], "arguments must be a mapping"),
    ],
)
def test_invalid_arguments_raise_argument_error_and_nothing_runs(
    worker, events, docs, plan, arguments, message
):
    with pytest.raises(ArgumentError, match=message):
        worker.submit(plan, arguments, {})
    assert events.events == []
    assert docs.of("start") == []
    assert worker.state == "idle"
    assert not worker.busy
    _runs_to_success(worker, events, docs)


@pytest.mark.parametrize("key", sorted(RESERVED_METADATA_KEYS))
def test_metadata_with_reserved_keys_is_refused_and_nothing_runs(worker, events, docs, key):
    assert {"uid", "scan_id", "plan_name", "num_points", "plan_args"} <= RESERVED_METADATA_KEYS
    with pytest.raises(ArgumentError, match=f"Metadata may not set {key}"):
        worker.submit("count", COUNT, {"sample": "Si", key: "mine"})
    assert events.events == []
    assert docs.of("start") == []
    assert not worker.busy


def test_metadata_that_is_not_a_mapping_is_refused(worker, events):
    with pytest.raises(ArgumentError, match="Metadata must be a JSON object"):
        worker.submit("count", COUNT, ["sample", "Si"])  # type: ignore[arg-type]
    assert events.events == []


def test_metadata_is_merged_into_the_start_document(worker, events, docs):
    md = {"sample": "Si wafer", "operator": "ann", "tags": ["a", "b"]}
    events.wait_finished(worker.submit("count", COUNT, md))
    start = docs.one("start")
    assert {k: start[k] for k in md} == md
    assert start["plan_name"] == "count"


# -- pause and resume ----------------------------------------------------------------------


@pytest.mark.parametrize("defer", [False, True], ids=["immediate", "deferred"])
def test_pause_then_resume_completes_with_every_point_recorded_once(worker, events, docs, defer):
    ticket = worker.submit("slow_count", SLOW | {"ticks": 10}, {})
    events.wait_point(1)
    worker.request_pause(defer=defer)
    paused = events.wait_state("paused")
    assert worker.state == "paused"
    assert worker.busy
    if defer:
        assert (
            StatusMessage("deferred pause requested: pausing at next checkpoint") in events.events
        )
    events.wait_for(lambda e: isinstance(e, StatusMessage) and "paused" in e.text)
    assert not events.of(PlanFinished)

    worker.resume()
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.SUCCESS
    later_states = [e.state for e in events.after(paused) if isinstance(e, StateChanged)]
    assert later_states == ["running", "idle"]
    assert StatusMessage("resuming") in events.events
    stop = docs.one("stop")
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": 3}
    assert events.of(RunClosed)[0].num_events == 3
    assert events.of(Progress)[-1].current_point == 3


def test_count_paused_during_its_delay_and_resumed_still_records_num_events(worker, events, docs):
    # Pausing between a reading and the next checkpoint makes bluesky replay that reading
    # on resume; the stop document counts each point once all the same.
    ticket = worker.submit("count", {"detectors": ["det"], "num": 3, "delay": 0.2}, {})
    events.wait_point(1)
    worker.request_pause()
    events.wait_state("paused")
    worker.resume()
    assert events.wait_finished(ticket).exit_status is ExitStatus.SUCCESS
    assert docs.one("stop")["num_events"] == {"primary": 3}
    assert events.of(RunClosed)[0].num_events == 3


def test_progress_does_not_count_a_reading_replayed_after_a_pause(worker, events, docs):
    ticket = worker.submit("count", {"detectors": ["det"], "num": 3, "delay": 0.2}, {})
    events.wait_point(1)
    # now inside the 0.2 s delay after point 1: after the reading, before the next checkpoint
    worker.request_pause()
    events.wait_state("paused")
    worker.resume()
    events.wait_finished(ticket)
    assert docs.one("stop")["num_events"] == {"primary": 3}
    assert [p.current_point for p in events.of(Progress)] == [1, 2, 3]


# -- stop, abort, halt ---------------------------------------------------------------------

INTERRUPTS = {
    # command: (PlanFinished status, stop document exit_status, message, transient state)
    "stop": (ExitStatus.SUCCESS, "success", "stopped on request", "stopping"),
    "abort": (ExitStatus.ABORT, "abort", "aborted on request: beam lost", "aborting"),
    "halt": (ExitStatus.ABORT, "abort", "halted on request (no cleanup)", "halting"),
}


def _interrupt(worker: RunEngineWorker, command: str) -> None:
    if command == "abort":
        worker.abort("beam lost")
    else:
        getattr(worker, command)()


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
@pytest.mark.parametrize("command", list(INTERRUPTS))
def test_stop_abort_halt_end_the_plan_with_their_exit_status(worker, events, docs, command, paused):
    status, doc_status, message, transient = INTERRUPTS[command]
    ticket = worker.submit("slow_count", SLOW, {})
    events.wait_point(1)
    if paused:
        worker.request_pause()
        events.wait_state("paused")

    _interrupt(worker, command)
    finished = events.wait_finished(ticket)

    assert finished.exit_status is status
    assert finished.message == message
    start, stop = docs.one("start"), docs.one("stop")
    assert finished.run_uids == (start["uid"],)
    assert stop["exit_status"] == doc_status
    (closed,) = events.of(RunClosed)
    assert (closed.uid, closed.exit_status) == (start["uid"], doc_status)
    assert stop["num_events"]["primary"] < 3  # ended early, not after the ~3 s plan
    assert transient in events.states()
    assert events.states()[-1] == "idle"
    assert not worker.busy

    _runs_to_success(worker, events, docs)


@pytest.mark.parametrize("command", ["request_pause", "resume", "stop", "abort", "halt"])
def test_commands_while_idle_are_refused(worker, events, command):
    with pytest.raises(Refused, match="idle"):
        getattr(worker, command)()
    assert worker.state == "idle"
    assert not any(isinstance(e, PlanAccepted | StateChanged) for e in events.events)


def test_resume_while_running_and_pause_while_paused_are_refused(worker, events, docs):
    ticket = worker.submit("slow_count", SHORT_SLOW, {})
    events.wait_point(1)
    with pytest.raises(Refused, match="cannot resume, the RunEngine is running"):
        worker.resume()
    worker.request_pause()
    events.wait_state("paused")
    with pytest.raises(Refused, match="cannot pause, the RunEngine is paused"):
        worker.request_pause()
    worker.resume()
    assert events.wait_finished(ticket).exit_status is ExitStatus.SUCCESS
    assert docs.one("stop")["num_events"] == {"primary": 3}


# -- failures ------------------------------------------------------------------------------


def test_a_plan_raising_mid_run_finishes_as_failed_with_the_exception_text(worker, events, docs):
    ticket = worker.submit("fail_after", {"detectors": ["det"], "points": 2}, {})
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.FAIL
    assert finished.message == "RuntimeError: detector on fire after 2 points"
    start, stop = docs.one("start"), docs.one("stop")
    assert finished.run_uids == (start["uid"],)
    assert stop["exit_status"] == "fail"
    assert "detector on fire" in stop["reason"]
    assert stop["num_events"] == {"primary": 2}
    assert [p.current_point for p in events.of(Progress)] == [1, 2]
    assert events.of(RunClosed)[0].exit_status == "fail"
    assert worker.state == "idle"
    assert not worker.busy

    _runs_to_success(worker, events, docs)


# -- shutdown ------------------------------------------------------------------------------


def test_shutdown_while_a_plan_runs_aborts_it_cleanly_and_ends_the_thread(
    make_worker, registry, events, docs
):
    before = _threads_named("runengine-worker")
    worker = make_worker(registry, events, callbacks=[docs])
    (thread,) = _threads_named("runengine-worker") - before
    ticket = worker.submit("slow_count", SLOW, {})
    events.wait_point(1)

    started = time.monotonic()
    assert worker.shutdown(reason="IOC going down", timeout=5) is True
    assert time.monotonic() - started < 4.0  # the abort worked: no wait for the timeout

    assert not thread.is_alive()
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.ABORT
    assert "IOC going down" in finished.message
    assert docs.one("stop")["exit_status"] == "abort"
    assert not worker.busy


def test_shutdown_while_idle_returns_true_and_ends_the_thread(make_worker, registry, events):
    before = _threads_named("runengine-worker")
    worker = make_worker(registry, events)
    (thread,) = _threads_named("runengine-worker") - before
    assert worker.shutdown(timeout=5) is True
    assert not thread.is_alive()
    assert events.events == []


def test_shutdown_right_after_submit_aborts_the_accepted_plan(make_worker, registry, docs):
    gate = threading.Event()
    events = EventLog()

    def listener(event: Any) -> None:
        events(event)
        if isinstance(event, StatusMessage) and event.text.startswith("running"):
            # hold the worker thread between accepting the plan and starting the RunEngine
            gate.wait(TIMEOUT)

    worker = make_worker(registry, listener, callbacks=[docs])
    original_abort = worker.abort
    aborts: list[BaseException | None] = []

    def abort(reason: str = "") -> None:
        try:
            original_abort(reason)
        except BaseException as exc:
            aborts.append(exc)
            raise
        else:
            aborts.append(None)
        finally:
            gate.set()

    worker.abort = abort  # type: ignore[method-assign]
    ticket = worker.submit("slow_count", {"detectors": ["det"], "num": 2, "ticks": 5}, {})
    events.wait_for(lambda e: isinstance(e, StatusMessage) and e.text.startswith("running"))
    assert worker.busy

    assert worker.shutdown(reason="IOC going down", timeout=5) is True
    assert aborts == [None]  # the accepted plan was aborted, not refused
    finished = events.wait_finished(ticket)
    assert finished.exit_status is ExitStatus.ABORT
    # the abort came before the RunEngine started the plan: it never ran, so no run was opened
    # (and none is left without a stop document)
    assert docs.of("start") == []
    assert docs.of("stop") == []
