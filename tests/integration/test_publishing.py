"""Publishing: every State transition reaches monitors in order; per-point PVs are coalesced."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.polling import poll

from .ca_tools import monitor_values

WATCHER = Path(__file__).with_name("pyepics_watch.py")


class PyepicsWatcher:
    """pyepics monitoring some PVs from another process."""

    def __init__(self, ioc, *suffixes: str) -> None:  # type: ignore[no-untyped-def]
        self.proc = subprocess.Popen(
            [sys.executable, str(WATCHER), *[ioc.ca.pv(s) for s in suffixes]],
            env=ioc.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.values: list[str] = []
        # the first monitor update may be printed (from pyepics' thread) before "ready"
        while True:
            line = json.loads(self.proc.stdout.readline() or "{}")
            if line.get("ready"):
                break
            assert "value" in line, line
            self.values.append(line["value"])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            update = json.loads(line)
            if "value" in update:
                self.values.append(update["value"])

    def wait_for_last(self, value: str, timeout: float = 10.0) -> list[str]:
        """Wait until the latest update is value; return all values seen."""
        poll(lambda: bool(self.values) and self.values[-1] == value, timeout)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.values


def test_every_state_transition_reaches_a_pyepics_monitor_in_order(ioc):
    watcher = PyepicsWatcher(ioc, "State")
    ioc.ca.configure("count", {"detectors": ["det"], "num": 200, "delay": 0.02})
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 3)
    assert ioc.ca.put("Pause", 1).ok
    ioc.ca.wait_for("State", "paused")
    assert ioc.ca.put("Resume", 1).ok
    ioc.ca.wait_for("State", "running")
    assert ioc.ca.put("Abort", 1).ok
    assert pending.wait(30) == 0
    states = watcher.wait_for_last("idle")
    assert states == ["idle", "running", "pausing", "paused", "running", "aborting", "idle"]


def run_count(
    ioc: Any, monitor: Any, args: dict[str, Any], until: Callable[[str], bool]
) -> tuple[str, list[int], float]:
    """Start count(**args) once State reads idle, and watch it with ``monitor`` until
    ``until`` holds: the monitor's output, its CurrentPoint values, and ElapsedTime as read
    right after the start (a bound on the run's length for the rate checks)."""
    ioc.ca.wait_for("State", "idle")
    ioc.ca.configure("count", args)
    assert ioc.ca.put("Start", 1).ok
    elapsed = float(ioc.ca.get("ElapsedTime"))
    output = monitor.finish(until=until)
    return output, [int(v) for v in monitor_values(output, ":CurrentPoint")], elapsed


def test_per_point_pvs_are_coalesced_and_end_on_the_final_values(ioc):
    monitor = ioc.ca.monitor("CurrentPoint", "Progress", "State")
    output, points, elapsed = run_count(
        ioc,
        monitor,
        {"detectors": ["det"], "num": 1000},
        until=lambda out: (
            monitor_values(out, ":State")[-1:] == ["idle"]
            and "100" in monitor_values(out, ":Progress")
        ),
    )
    progress = [float(v) for v in monitor_values(output, ":Progress")]
    assert points[-1] == 1000
    assert progress[-1] == 100.0
    # at most 10 Hz (the default --max-rate) plus the initial, reset and final values
    assert len(points) <= elapsed * 10 + 5, (len(points), elapsed)
    assert points == sorted(points)
    assert monitor_values(output, ":State") == ["idle", "running", "idle"]


def test_max_rate_flag_bounds_the_update_rate(make_ioc):
    ioc = make_ioc("--max-rate", "2")
    monitor = ioc.ca.monitor("CurrentPoint")
    _, points, elapsed = run_count(
        ioc,
        monitor,
        {"detectors": ["det"], "num": 60, "delay": 0.02},
        until=lambda out: "60" in monitor_values(out, ":CurrentPoint"),
    )
    assert points[-1] == 60
    assert len(points) <= elapsed * 2 + 4, (len(points), elapsed)


def test_many_subscriptions_slow_the_per_point_pvs_but_not_state_or_the_final_values(make_ioc):
    """--update-budget: subscriptions x publications per second. With a budget of 4 and the
    five subscriptions below, per-point PVs go out about once a second (the slowest), while
    State changes still each go out and the run still ends on its final values."""
    ioc = make_ioc("--update-budget", "4")
    monitor = ioc.ca.monitor("CurrentPoint", "Progress", "ElapsedTime", "RemainingTime", "State")
    output, points, elapsed = run_count(
        ioc,
        monitor,
        {"detectors": ["det"], "num": 40, "delay": 0.05},
        until=lambda out: (
            monitor_values(out, ":State")[-1:] == ["idle"]
            and "40" in monitor_values(out, ":CurrentPoint")
        ),
    )
    assert points[-1] == 40
    assert monitor_values(output, ":State") == ["idle", "running", "idle"]
    # 10 Hz would give about 20 updates in the ~2 s run; once a second gives a handful
    assert len(points) <= elapsed * 1 + 4, (len(points), elapsed)
