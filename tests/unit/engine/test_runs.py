"""The run tracker reads whatever a plan's start document says about its size."""

from __future__ import annotations

import math

import pytest

from runengine_ioc.engine.events import RunOpened
from runengine_ioc.engine.runs import RunTracker


@pytest.mark.parametrize("num_points", [math.inf, -math.inf, math.nan, 0, -3, "many", None])
def test_a_start_document_with_no_usable_size_opens_a_run_of_unknown_length(num_points):
    seen: list[object] = []
    tracker = RunTracker(seen.append)
    tracker("start", {"uid": "u1", "time": 1.0, "scan_id": 1, "num_points": num_points})
    (opened,) = [event for event in seen if isinstance(event, RunOpened)]
    assert opened.total_points is None


@pytest.mark.parametrize("num_points", [2**70, 10**400, 12.0])
def test_a_finite_size_is_the_runs_length(num_points):
    seen: list[object] = []
    RunTracker(seen.append)("start", {"uid": "u1", "time": 1.0, "num_points": num_points})
    (opened,) = [event for event in seen if isinstance(event, RunOpened)]
    assert opened.total_points == int(num_points)  # the status PVs clamp what exceeds a longin
