"""Live data accumulation (LiveData) and its coalescing through the bridge; no Channel Access."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import bluesky.plans as bp
import numpy as np
import pytest

from runengine_ioc.data.live_data import LiveData
from runengine_ioc.engine.bridge import Bridge
from runengine_ioc.engine.events import (
    DataSnapshot,
    DataUpdate,
    PeakStatsComputed,
    RunClosed,
    RunOpened,
    StatusMessage,
)

from ..engine.test_bridge import RecordingPublisher, publishing, run, until


class Recorder:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)

    def of(self, kind: type) -> list[Any]:
        return [item for item in self.items if isinstance(item, kind)]

    def last_snapshot(self) -> DataSnapshot:
        return self.of(DataUpdate)[-1].take()


def run_plan(RE, plan, capacity: int = 1000) -> tuple[Recorder, list[tuple[str, dict]]]:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    live = LiveData(recorder, capacity=capacity)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE.subscribe(live)
    RE(plan)
    return recorder, docs


def primary_events(docs: list[tuple[str, dict]]) -> list[dict]:
    primary = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "primary"}
    return [d for n, d in docs if n == "event" and d["descriptor"] in primary]


def test_a_scan_fills_x_with_the_motor_and_y_with_the_hinted_detectors_in_order(RE, devices):
    recorder, docs = run_plan(RE, bp.scan([devices.det, devices.det1], devices.motor, -1, 1, 11))
    snapshot = recorder.last_snapshot()
    events = primary_events(docs)
    assert snapshot.x_name == "motor"
    assert snapshot.y_names == ("det", "det1")
    assert snapshot.points_taken == 11
    np.testing.assert_allclose(snapshot.x, [e["data"]["motor"] for e in events])
    np.testing.assert_allclose(snapshot.ys[0], [e["data"]["det"] for e in events])
    np.testing.assert_allclose(snapshot.ys[1], [e["data"]["det1"] for e in events])
    assert '"det": ' in snapshot.last_event
    assert len(recorder.of(DataUpdate)) == 12  # the names at the descriptor, then each point


def test_a_count_uses_seq_num_for_x_and_has_no_peak_statistics(RE, devices):
    recorder, _ = run_plan(RE, bp.count([devices.det], num=4))
    snapshot = recorder.last_snapshot()
    assert snapshot.x_name == "seq_num"
    assert list(snapshot.x) == [1.0, 2.0, 3.0, 4.0]
    assert snapshot.y_names == ("det",)
    assert recorder.of(PeakStatsComputed) == []


def test_a_grid_scan_keeps_motors_out_of_y_and_has_no_peak_statistics(RE, devices):
    plan = bp.grid_scan([devices.det4], devices.motor1, -1, 1, 3, devices.motor2, -1, 1, 3)
    recorder, _ = run_plan(RE, plan)
    snapshot = recorder.last_snapshot()
    assert snapshot.x_name == "motor1"
    assert snapshot.y_names == ("det4",)
    assert recorder.of(PeakStatsComputed) == []


def test_at_most_four_detector_fields_are_followed(RE, devices):
    detectors = [devices.det, devices.det1, devices.det2, devices.det3, devices.noisy_det]
    recorder, _ = run_plan(RE, bp.scan(detectors, devices.motor, -1, 1, 3))
    assert recorder.last_snapshot().y_names == ("det", "det1", "det2", "det3")


def test_peak_statistics_of_a_scan_over_the_gaussian_are_within_one_step_of_its_centre(RE, devices):
    recorder, _ = run_plan(RE, bp.scan([devices.det], devices.motor, -5, 5, 41))
    (stats,) = recorder.of(PeakStatsComputed)
    step = 10 / 40
    assert (stats.detector, stats.motor) == ("det", "motor")
    assert abs(stats.cen) <= step
    assert abs(stats.com) <= step
    assert abs(stats.max_pos) <= step
    assert stats.max == pytest.approx(1.0)
    assert abs(stats.fwhm - 2 * math.sqrt(2 * math.log(2))) <= step  # sigma 1


def test_undefined_peak_statistics_are_nan(RE, devices):
    # det1 follows motor1: scanning motor leaves it flat, so no half-maximum crossings
    recorder, _ = run_plan(RE, bp.scan([devices.det1], devices.motor, -1, 1, 5))
    (stats,) = recorder.of(PeakStatsComputed)
    assert math.isnan(stats.cen) and math.isnan(stats.fwhm)


def test_a_run_longer_than_the_capacity_keeps_the_most_recent_points_and_says_so_once(RE, devices):
    recorder, _ = run_plan(RE, bp.count([devices.det], num=25), capacity=10)
    snapshot = recorder.last_snapshot()
    assert list(snapshot.x) == [float(i) for i in range(16, 26)]
    assert snapshot.points_taken == 25
    messages = [m.text for m in recorder.of(StatusMessage)]
    assert len(messages) == 1 and "--data-capacity 10" in messages[0]


def test_a_snapshot_is_a_copy_taken_only_when_asked(RE, devices):
    recorder, _ = run_plan(RE, bp.count([devices.det], num=3))
    update = recorder.of(DataUpdate)[1]  # after the first point
    early = update.take()
    # the buffer kept growing after that update: take() copies what is there now
    assert len(early.x) == 3
    early.x[:] = -1
    assert list(recorder.last_snapshot().x) == [1.0, 2.0, 3.0]


def test_a_reading_replayed_after_a_pause_overwrites_its_point():
    recorder = Recorder()
    live = LiveData(recorder)
    live("start", {"uid": "run-1", "time": 0, "motors": ["m"], "hints": {}})
    live(
        "descriptor",
        {
            "uid": "d-1",
            "run_start": "run-1",
            "name": "primary",
            "data_keys": {"m": {"dtype": "number", "shape": []}, "d": {"dtype": "number"}},
            "hints": {"m": {"fields": ["m"]}, "d": {"fields": ["d"]}},
        },
    )
    # seq_num 2 comes again: bluesky replays the readings since the checkpoint on resume
    for seq_num, m, d in [(1, 0.0, 1.0), (2, 1.0, 2.0), (2, 1.0, 2.5), (3, 2.0, 3.0)]:
        live("event", {"descriptor": "d-1", "seq_num": seq_num, "data": {"m": m, "d": d}})
    snapshot = recorder.last_snapshot()
    assert list(snapshot.x) == [0.0, 1.0, 2.0]
    assert list(snapshot.ys[0]) == [1.0, 2.5, 3.0]


def test_a_malformed_document_is_logged_and_never_raised(caplog):
    live = LiveData(Recorder())
    live("start", {"uid": "run-1", "hints": {}})
    live("descriptor", {"name": "primary"})  # no uid
    live("event", {"descriptor": None})
    assert "not handled" in caplog.text


def test_data_updates_are_coalesced_never_published_before_their_run_opened_and_final_first():
    async def main() -> None:
        bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=10)
        publisher = RecordingPublisher()
        published: list[Any] = []

        async def publish_latest(item: Any) -> None:
            published.append(item.take())
            publisher.calls.append(("latest", item))

        publisher.publish_latest = publish_latest  # type: ignore[attr-defined]
        live = LiveData(bridge.listener)
        total = 2000
        async with publishing(bridge, publisher):

            def feed() -> None:
                bridge.listener(RunOpened("run-1", 1, "count", total, time.time()))
                live("start", {"uid": "run-1", "time": 0, "hints": {}})
                live(
                    "descriptor",
                    {
                        "uid": "d",
                        "name": "primary",
                        "data_keys": {"det": {"dtype": "number", "shape": []}},
                        "hints": {"det": {"fields": ["det"]}},
                    },
                )
                for i in range(1, total + 1):
                    live("event", {"descriptor": "d", "seq_num": i, "data": {"det": i}})
                bridge.listener(RunClosed("run-1", "success", "", total))

            thread = threading.Thread(target=feed)
            thread.start()
            await until(lambda: any(isinstance(e, RunClosed) for e in publisher.events))
            thread.join()
        assert published, "no data published"
        assert len(published) < total / 10  # coalesced
        calls = publisher.calls
        opened = next(i for i, c in enumerate(calls) if isinstance(c[1], RunOpened))
        closed = next(i for i, c in enumerate(calls) if isinstance(c[1], RunClosed))
        latest = [i for i, c in enumerate(calls) if c[0] == "latest"]
        assert opened < latest[0] and latest[-1] < closed
        assert published[-1].points_taken == total
        assert list(published[-1].ys[0][-3:]) == [total - 2, total - 1, total]

    run(main)
