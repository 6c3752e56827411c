"""The plan library, run in an in-process RunEngine with simulated ophyd devices."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from bluesky import RunEngine

from runengine_ioc import plans
from runengine_ioc.plans import (
    DEFAULT_PLANS,
    count,
    grid_scan,
    list_scan,
    mv,
    rel_grid_scan,
    rel_scan,
    scan,
)

Docs = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def docs(RE: RunEngine) -> Docs:
    collected: Docs = []
    RE.subscribe(lambda name, doc: collected.append((name, doc)))
    return collected


def _of(docs: Docs, name: str) -> list[dict[str, Any]]:
    return [doc for kind, doc in docs if kind == name]


def _column(docs: Docs, key: str) -> list[Any]:
    return [event["data"][key] for event in _of(docs, "event")]


def _one_successful_run(docs: Docs) -> dict[str, Any]:
    (start,) = _of(docs, "start")
    (stop,) = _of(docs, "stop")
    assert stop["exit_status"] == "success"
    assert stop["num_events"]["primary"] == len(_of(docs, "event"))
    return start


def test_count_reads_the_detectors_num_times(RE, devices, docs):
    RE(count([devices.det1, devices.det2], num=3))
    start = _one_successful_run(docs)
    assert start["plan_name"] == "count"
    assert start["num_points"] == 3
    assert start["detectors"] == ["det1", "det2"]
    assert len(_of(docs, "event")) == 3
    assert {"det1", "det2"} <= set(_of(docs, "event")[0]["data"])


def test_count_defaults_to_one_reading(RE, devices, docs):
    RE(count([devices.det]))
    _one_successful_run(docs)
    assert len(_of(docs, "event")) == 1


def test_scan_visits_equally_spaced_points_including_both_ends(RE, devices, docs):
    RE(scan([devices.det], devices.motor, -1.0, 1.0, 5))
    start = _one_successful_run(docs)
    assert start["plan_name"] == "scan"
    assert start["num_points"] == 5
    assert _column(docs, "motor") == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])


def test_rel_scan_is_relative_to_the_current_position_and_returns_there(RE, devices, docs):
    devices.motor.set(10.0).wait(timeout=5)
    RE(rel_scan([devices.det], devices.motor, -1, 1, 3))
    start = _one_successful_run(docs)
    assert start["plan_name"] == "rel_scan"
    assert _column(docs, "motor") == pytest.approx([9.0, 10.0, 11.0])
    assert devices.motor.position == pytest.approx(10.0)


def test_list_scan_visits_the_positions_in_order(RE, devices, docs):
    RE(list_scan([devices.det], devices.motor, [3.0, -1.0, 2.5]))
    start = _one_successful_run(docs)
    assert start["plan_name"] == "list_scan"
    assert start["num_points"] == 3
    assert _column(docs, "motor") == pytest.approx([3.0, -1.0, 2.5])


def test_grid_scan_moves_motor2_fastest(RE, devices, docs):
    RE(grid_scan([devices.det4], devices.motor1, 0, 1, 2, devices.motor2, 0, 2, 3))
    start = _one_successful_run(docs)
    assert start["plan_name"] == "grid_scan"
    assert start["num_points"] == 6
    assert list(start["shape"]) == [2, 3]
    points = list(zip(_column(docs, "motor1"), _column(docs, "motor2"), strict=True))
    assert points == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_grid_scan_with_snake_reverses_motor2_on_every_other_row(RE, devices, docs):
    RE(grid_scan([devices.det4], devices.motor1, 0, 2, 3, devices.motor2, 0, 1, 2, snake=True))
    start = _one_successful_run(docs)
    assert list(start["snaking"]) == [False, True]
    points = list(zip(_column(docs, "motor1"), _column(docs, "motor2"), strict=True))
    assert points == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1)]


def test_rel_grid_scan_is_relative_and_returns_the_motors(RE, devices, docs):
    devices.motor1.set(5.0).wait(timeout=5)
    devices.motor2.set(-5.0).wait(timeout=5)
    RE(rel_grid_scan([devices.det4], devices.motor1, 0, 1, 2, devices.motor2, -1, 1, 2))
    start = _one_successful_run(docs)
    assert start["plan_name"] == "rel_grid_scan"
    points = list(zip(_column(docs, "motor1"), _column(docs, "motor2"), strict=True))
    assert points == [(5, -6), (5, -4), (6, -6), (6, -4)]
    assert (devices.motor1.position, devices.motor2.position) == (5.0, -5.0)


def test_mv_moves_the_device_without_opening_a_run(RE, devices, docs):
    RE(mv(devices.motor, 4.5))
    assert devices.motor.position == pytest.approx(4.5)
    assert docs == []


@pytest.mark.parametrize(
    ("make_plan", "message"),
    [
        (lambda d: count([d.det], num=0), "num must be at least 1, got 0"),
        (lambda d: count([d.det], num=2.5), "num must be an integer, got 2.5"),
        (lambda d: count([d.det], num=True), "num must be an integer, got True"),
        (lambda d: count([d.det], delay=-1), "delay must not be negative"),
        (lambda d: count([]), "detectors: at least one device is needed"),
        (lambda d: scan([d.det], d.motor, 0, float("nan"), 3), "stop must be a finite number"),
        (lambda d: scan([d.det], d.motor, 0, 1, 0), "num must be at least 1"),
        (lambda d: list_scan([d.det], d.motor, []), "at least one position is needed"),
        (lambda d: list_scan([d.det], d.motor, [1, "x"]), "positions[1] must be a number"),
        (
            lambda d: grid_scan([d.det], d.motor1, 0, 1, 2, d.motor1, 0, 1, 2),
            "motor1 and motor2 must be different devices",
        ),
        (lambda d: mv(d.motor, float("inf")), "position must be a finite number"),
    ],
)
def test_plans_refuse_values_bluesky_would_misuse_before_any_message(devices, make_plan, message):
    gen = make_plan(devices)
    with pytest.raises(ValueError) as info:
        next(gen)
    assert message in str(info.value)


def test_default_plans_are_the_exported_generator_functions():
    assert [p.__name__ for p in DEFAULT_PLANS] == [
        "count",
        "scan",
        "rel_scan",
        "list_scan",
        "grid_scan",
        "rel_grid_scan",
        "mv",
    ]
    assert set(plans.__all__) >= {p.__name__ for p in DEFAULT_PLANS} | {"DEFAULT_PLANS"}
    for plan in DEFAULT_PLANS:
        assert inspect.isgeneratorfunction(plan)
        params = inspect.signature(plan).parameters.values()
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params), plan.__name__
        doc = inspect.getdoc(plan) or ""
        assert doc.splitlines()[0].endswith("."), plan.__name__
        assert "Parameters\n----------" in doc
