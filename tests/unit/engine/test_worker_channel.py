"""What crosses between the IOC process and its worker process, without processes.

The messages (read back through the IOC's restricted unpickler), the registry as plain data,
the worker's uplink (per-point records coalesced, flushed before the next ordered event), the
bridge's answer to a plan that ends before its submit() returns, and the stop document the IOC
writes for a run whose worker died.
"""

from __future__ import annotations

import asyncio
import enum
import json
import pickle
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from runengine_ioc.data.files import DamagedRunWarning, close_cut_run, read_run, run_file_name
from runengine_ioc.engine.bridge import Bridge
from runengine_ioc.engine.catalog import RegistryView
from runengine_ioc.engine.events import (
    DataSnapshot,
    DataUpdate,
    ExitStatus,
    PlanAccepted,
    PlanFinished,
    Progress,
)
from runengine_ioc.engine.registry import ArgumentError, Registry
from runengine_ioc.engine.wire import DataTaken, Reply, dump, load_from_worker
from runengine_ioc.host import Uplink
from runengine_ioc.plans import DEFAULT_PLANS
from tests.polling import wait_until


class Edge(enum.Enum):  # a profile's own type: must never be unpickled by the IOC
    RISING = "rising"
    FALLING = "falling"


def edge_scan(detectors: list[Any], edge: Edge = Edge.RISING, mode: Literal["a", "b"] = "a"):  # type: ignore[no-untyped-def]
    """Scan on an edge."""
    yield from ()


def test_engine_records_and_numpy_arrays_cross_to_the_ioc():
    finished = PlanFinished(7, "count", ExitStatus.FAIL, "interrupted", ("uid-1",))
    assert load_from_worker(dump(finished)) == finished
    snapshot = DataSnapshot("u", "x", ("y",), np.arange(3.0), (np.ones(3),), 3, "{}")
    taken = load_from_worker(dump(DataTaken(snapshot)))
    assert np.array_equal(taken.snapshot.x, np.arange(3.0))
    assert load_from_worker(dump(Reply(1, {"a": [1, 2.5, None]}))) == Reply(
        1, {"a": [1, 2.5, None]}
    )


@pytest.mark.parametrize("value", [Edge.RISING, OrderedDict(a=1), threading.Event])
def test_anything_else_from_the_worker_is_refused_unread(value):
    with pytest.raises(pickle.UnpicklingError, match="not admitted"):
        load_from_worker(dump(Reply(1, value)))


def test_the_registry_view_serves_from_plain_data_and_checks_through_the_registry(devices):
    registry = Registry([devices.det, devices.motor], [*DEFAULT_PLANS, edge_scan])
    view = RegistryView.local(registry)
    restored = load_from_worker(dump(view.description))  # crosses with no profile type in it
    assert restored == view.description
    assert view.plan_names == registry.plan_names and view.device_names == registry.device_names
    (_, edge, mode) = view.parameters("edge_scan")
    assert edge.choices == ("rising", "falling") and edge.default == "rising"
    assert edge.choice_values == ("rising", "falling")
    assert mode.choices == ("a", "b")
    assert view.json_schema("count") == registry.json_schema("count")
    assert view.plan_summary("edge_scan") == "Scan on an edge."
    for arguments in ({}, {"num": 7}, {"num": 7, "detectors": ["det"]}):
        assert view.points("count", arguments) == registry.points("count", arguments)
    with pytest.raises(ArgumentError, match="unknown plan 'nope'"):
        view.check_plan_name("nope")

    async def checks() -> None:
        await view.validate("count", {"detectors": ["det"], "num": 2})
        with pytest.raises(ArgumentError, match="expected an integer"):
            await view.validate("count", {"detectors": ["det"], "num": "two"})
        with pytest.raises(ArgumentError, match="unknown device"):
            await view.check_argument("count", "detectors", ["nope"])

    asyncio.run(checks())


class Wire:
    """A connection end that keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_bytes(self, data: bytes) -> None:
        self.sent.append(load_from_worker(data))


def test_the_uplink_sends_the_latest_per_point_record_before_the_next_ordered_event():
    wire = Wire()
    uplink = Uplink(wire, rate_hz=0.01)  # type: ignore[arg-type]  # the ticker never fires here
    try:
        for point in range(1, 50):
            uplink.listener(Progress(point, 100, 0.0, float(point)))
        snapshot = DataSnapshot("u", "x", ("y",), np.arange(2.0), (np.ones(2),), 2, "{}")
        uplink.listener(DataUpdate("u", lambda: snapshot))
        assert wire.sent == []  # coalesced: nothing yet
        uplink.listener(PlanFinished(1, "count", ExitStatus.SUCCESS, "done"))
        progress, data, finished = wire.sent
        assert progress == Progress(49, 100, 0.0, 49.0)
        assert isinstance(data, DataTaken) and data.snapshot.points_taken == 2
        assert isinstance(finished, PlanFinished)
    finally:
        uplink.closed.set()


def test_the_uplink_ticker_sends_per_point_records_at_its_rate():
    wire = Wire()
    uplink = Uplink(wire, rate_hz=50)  # type: ignore[arg-type]
    try:
        uplink.listener(Progress(1, 10, 0.0, 1.0))
        wait_until(lambda: wire.sent == [Progress(1, 10, 0.0, 1.0)], 5)
    finally:
        uplink.closed.set()


class EndsAtOnce:
    """A worker whose plan has ended (and said so) before submit() hands the ticket back."""

    state, busy = "idle", False

    def __init__(self) -> None:
        self.listener: Any = None

    def submit(self, plan_name: str, arguments: Any, metadata: Any) -> int:
        self.listener(PlanAccepted(5, plan_name))
        self.listener(PlanFinished(5, plan_name, ExitStatus.SUCCESS, "done"))
        # the publishing loop runs meanwhile (submit runs off the loop): let it publish both
        wait_until(lambda: self.published >= 2, 5)
        return 5

    published = 0


def test_a_plan_that_ends_before_its_submit_returns_still_resolves_its_waiter():
    class Counting:
        async def publish_event(self, event: Any) -> None:
            worker.published += 1

        async def publish_progress(self, progress: Any, now: float) -> None: ...

        async def publish_latest(self, item: Any) -> None: ...

    worker = EndsAtOnce()

    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop())
        worker.listener = bridge.listener
        bridge.attach(worker)  # type: ignore[arg-type]
        publishing = asyncio.ensure_future(bridge.publish_forever(Counting()))
        try:
            finished = await bridge.submit("count", {}, {})
            result = await asyncio.wait_for(finished, 5)
            assert result.ticket == 5 and result.exit_status is ExitStatus.SUCCESS
        finally:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)

    asyncio.run(main())


def _write_run(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


def test_the_ioc_closes_a_run_its_worker_left_open_counting_its_events(tmp_path):
    start = {"uid": "0123456789abcdef", "scan_id": 12, "time": 1.0}
    path = tmp_path / run_file_name(start)
    descriptors = [{"uid": "d1", "name": "primary"}, {"uid": "d2", "name": "baseline"}]
    events = [
        {"uid": f"e{i}", "descriptor": "d1" if i < 3 else "d2", "seq_num": i} for i in range(4)
    ]
    lines = [json.dumps({"name": "start", "doc": start}) + "\n"]
    lines += [json.dumps({"name": "descriptor", "doc": d}) + "\n" for d in descriptors]
    lines += [json.dumps({"name": "event", "doc": e}) + "\n" for e in events]
    _write_run(path, lines)
    assert close_cut_run(tmp_path, start["uid"], 12, "killed by SIGKILL") == "fail"
    documents = read_run(path)
    name, stop = documents[-1]
    assert name == "stop" and stop["run_start"] == start["uid"]
    assert stop["exit_status"] == "fail" and stop["reason"] == "killed by SIGKILL"
    assert stop["num_events"] == {"primary": 3, "baseline": 1}
    # closed once only; the file's own stop is what a second look reports
    assert close_cut_run(tmp_path, start["uid"], 12, "again") == "fail"
    assert [name for name, _ in read_run(path)].count("stop") == 1
    assert close_cut_run(tmp_path, "ffffffffffff", 13, "no file") is None


def test_a_line_cut_by_the_kill_stays_apart_from_the_stop_document(tmp_path):
    start = {"uid": "abcdef0123456789", "scan_id": 3, "time": 1.0}
    path = tmp_path / run_file_name(start)
    _write_run(path, [json.dumps({"name": "start", "doc": start}) + "\n", '{"name": "eve'])
    close_cut_run(tmp_path, start["uid"], 3, "killed")
    with pytest.warns(DamagedRunWarning, match="1 damaged line"):
        documents = read_run(path)
    assert [name for name, _ in documents] == ["start", "stop"]


def test_a_run_the_worker_closed_before_dying_keeps_its_own_stop_and_exit_status(tmp_path):
    start = {"uid": "1111222233334444", "scan_id": 4, "time": 1.0}
    path = tmp_path / run_file_name(start)
    stop = {"uid": "s", "run_start": start["uid"], "exit_status": "success", "num_events": {}}
    lines = [json.dumps({"name": "start", "doc": start}) + "\n"]
    lines.append(json.dumps({"name": "stop", "doc": stop}) + "\n")
    _write_run(path, lines)
    assert close_cut_run(tmp_path, start["uid"], 4, "killed") == "success"
    assert [name for name, _ in read_run(path)] == ["start", "stop"]
