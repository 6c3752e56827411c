"""Guarded document sinks: a slow or failing sink never holds up or fails the plan."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import bluesky.plans as bp
import pytest

from runengine_ioc.data.files import LocalFilesSink, read_run, replay, run_table
from runengine_ioc.data.guarded_sinks import GuardedSink, SinkMonitor, kafka_publisher
from runengine_ioc.engine.events import SinkHealth
from tests.polling import wait_until

TIMEOUT = 10.0


class Reports:
    def __init__(self) -> None:
        self.items: list[SinkHealth] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)

    @property
    def last(self) -> SinkHealth:
        return self.items[-1]


@pytest.fixture
def sinks():  # type: ignore[no-untyped-def]
    made: list[GuardedSink] = []
    yield made
    for sink in made:
        sink.close(5)


def test_a_sink_that_raises_does_not_change_the_exit_status_and_is_reported(RE, devices, sinks):
    reports = Reports()
    monitor = SinkMonitor(reports)

    def broken(name: str, doc: dict) -> None:
        if name == "event":
            raise ValueError("disk on fire")

    sink = GuardedSink("broken", lambda: broken, monitor)
    sinks.append(sink)
    RE.subscribe(sink)
    (uid,) = RE(bp.count([devices.det], num=5))
    assert RE.state == "idle" and uid
    wait_until(lambda: sink.failed == 5 and sink.delivered == 3)  # start, descriptor, stop
    health = monitor.health()
    assert "broken" in health.text and "disk on fire" in health.text
    assert health.undelivered == 5
    assert health.severity == 1  # the stop went through: no longer failing, but documents lost
    assert any(r.severity == 2 for r in reports.items)  # MAJOR while it failed


def test_a_slow_sink_never_holds_up_the_plan_and_counts_what_did_not_fit(RE, devices, sinks):
    reports = Reports()
    release = threading.Event()
    received: list[str] = []

    def slow(name: str, doc: dict) -> None:
        release.wait(TIMEOUT)
        received.append(name)

    sink = GuardedSink("slow", lambda: slow, SinkMonitor(reports), queue_size=3)
    sinks.append(sink)
    RE.subscribe(sink)
    RE(bp.count([devices.det], num=20))  # 23 documents; returns with the sink still blocked
    assert not release.is_set()
    assert sink.dropped >= 23 - 3 - 1  # the queue, and the one the thread holds
    assert reports.last.severity == 1 and reports.last.undelivered == sink.dropped
    release.set()
    wait_until(lambda: len(received) == 23 - sink.dropped)


def test_a_sink_that_cannot_be_made_is_reported_and_retried_at_the_next_run(RE, devices, sinks):
    attempts: list[int] = []
    got: list[str] = []

    def factory() -> Callable[[str, dict], None]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("server down")
        return lambda name, doc: got.append(name)

    monitor = SinkMonitor(Reports())
    sink = GuardedSink("flaky", factory, monitor)
    sinks.append(sink)
    wait_until(lambda: sink.failing)
    assert "cannot connect" in monitor.health().text and monitor.health().severity == 2
    RE.subscribe(sink)
    RE(bp.count([devices.det], num=2))
    wait_until(lambda: got[-1:] == ["stop"])
    assert got == ["start", "descriptor", "event", "event", "stop"]
    # nothing was lost (no run while it was down): all clear again
    assert monitor.health().severity == 0 and not sink.failing


def test_closing_a_sink_delivers_what_is_queued_first(sinks):
    got: list[int] = []
    sink = GuardedSink(
        "list", lambda: lambda name, doc: got.append(doc["i"]), SinkMonitor(Reports())
    )
    for i in range(100):
        sink("event", {"i": i})
    assert sink.close(TIMEOUT)
    assert got == list(range(100))
    sink("event", {"i": 100})  # after close: ignored, never raised
    assert got[-1] == 99


def test_no_sinks_is_reported_plainly():
    health = SinkMonitor(Reports()).health()
    assert (health.severity, health.undelivered) == (0, 0)
    assert "no sinks" in health.text


def test_the_kafka_publisher_is_bluesky_kafkas_and_is_built_without_a_broker():
    # no broker here: only the construction and configuration can be tested
    from bluesky_kafka import Publisher

    publisher = kafka_publisher("bluesky.documents", "127.0.0.1:9092")()
    assert isinstance(publisher, Publisher)
    assert publisher.topic == "bluesky.documents"
    assert publisher._producer_config["bootstrap.servers"] == "127.0.0.1:9092"
    assert publisher._producer_config["enable.idempotence"] is True


def test_a_saved_run_reads_back_as_a_table_and_replays_into_a_callback(RE, devices, tmp_path):
    files = LocalFilesSink(tmp_path)
    RE.subscribe(files)
    RE(bp.scan([devices.det], devices.motor, -1, 1, 5))
    assert files.last_file is not None
    table = run_table(files.last_file)
    assert list(table.index) == [1, 2, 3, 4, 5]
    assert list(table["motor"]) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert {"time", "det", "motor"} <= set(table.columns)
    replayed: list[tuple[str, dict]] = []
    replay(files.last_file, lambda name, doc: replayed.append((name, doc)))
    assert replayed == read_run(files.last_file)
    assert [n for n, _ in replayed] == ["start", "descriptor", *["event"] * 5, "stop"]
