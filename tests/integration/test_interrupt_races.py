"""Interrupts over Channel Access: races with Pause, Resume and Start, and a Halt that is bounded.

The races are driven by one pyepics client process (race_client.py: a CA tool per try would be
too slow) many times per command, at offsets spread over 0-10 ms; the same races are driven at
the worker level in tests/unit/engine/test_worker_interrupts.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_until

from .processes import children

CLIENT = Path(__file__).with_name("race_client.py")
STUCK_PROFILE = Path(__file__).with_name("profile_stuck_axis.py")
TRIES = 50
LONG_COUNT = {"detectors": ["det"], "num": 200, "delay": 0.02}  # ~4 s unless interrupted
EXIT = {"stop": "success", "abort": "abort", "halt": "abort"}
HALT_TIMEOUT = 1.5


def stop_documents(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every run's stop document by run uid (KeyError later means a run without one)."""
    stops: dict[str, dict[str, Any]] = {}
    for path in data_dir.glob("*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        docs = [(d["name"], d["doc"]) if isinstance(d, dict) else tuple(d) for d in lines]
        start = next(doc for name, doc in docs if name == "start")
        stop = [doc for name, doc in docs if name == "stop"]
        assert len(stop) == 1, f"{path.name}: {len(stop)} stop documents"
        stops[start["uid"]] = stop[0]
    return stops


def drive(ioc: Any, mode: str, commands: list[str]) -> list[dict[str, Any]]:
    names = ",".join(command.capitalize() for command in commands)
    result = subprocess.run(
        [sys.executable, str(CLIENT), ioc.prefix, mode, names, str(TRIES)],
        env=ioc.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    (ioc.data_dir.parent / f"race-{mode}.json").write_text(json.dumps(records))
    assert result.returncode == 0, result.stdout + result.stderr
    return [r for r in records if "try" in r]


@pytest.mark.parametrize(
    ("mode", "commands"),
    [("pause", ["halt", "abort"]), ("resume", ["stop", "abort", "halt"])],
    ids=["after-pause", "after-resume"],
)
def test_interrupts_racing_pause_resume_and_start_act_on_their_plan(make_ioc, mode, commands):
    """1: an interrupt 0-10 ms after Pause never wedges; 2: nor is one after Resume lost;
    4: the interrupt's put completes with the plan it interrupted, though the next Start has
    landed; and every run has a stop document that agrees with ExitStatus."""
    ioc = make_ioc()
    ioc.ca.configure("count", LONG_COUNT)
    records = drive(ioc, mode, commands)

    errors = [r for r in records if "error" in r]
    assert not errors, errors
    assert len(records) == TRIES * len(commands)
    # every plan ended early, by its interrupt, and said so
    wrong = [r for r in records if r["exit_status"] != EXIT[r["command"].lower()]]
    assert not wrong, wrong
    assert max(r["ended_after"] for r in records) < 2.0
    # each interrupt's put completed when its own plan ended, although the next plan ran
    not_started = [r for r in records[:-1] if not r["next_started"]]
    assert not not_started, not_started
    slow = [r for r in records if r["put_completed_after"] is None or r["put_completed_after"] > 2]
    assert not slow, slow
    stops = stop_documents(ioc.data_dir)
    assert len(stops) == len(records)
    for record in records:
        stop = stops[record["run_uid"]]
        assert stop["exit_status"] == record["exit_status"], (record, stop)
        assert stop["num_events"].get("primary", 0) < LONG_COUNT["num"]
    wait_until(lambda: ioc.ca.get("State") == "idle", 10)
    assert ioc.ca.get("Busy") == "Idle"


def test_halt_ends_a_stop_whose_cleanup_hangs_and_the_ioc_goes_on(make_ioc):
    """3: a Stop whose cleanup never ends shows State in alarm; Abort is refused in words;
    Halt ends it within the halt timeout (closing the run), the next plan runs; and SIGTERM
    during another hung cleanup exits promptly, with exit code 0."""
    ioc = make_ioc("--halt-timeout", str(HALT_TIMEOUT), profile=str(STUCK_PROFILE))
    assert ioc.proc is not None
    (tainted,) = children(ioc.proc.pid)
    ca = ioc.ca
    ca.configure("stuck_cleanup", {"detectors": ["det"], "axis": "stuck"})
    start = ca.start_put("Start", 1)
    ca.wait_for("CurrentPoint", lambda v: int(v) >= 1)
    assert ca.put("Stop", 1, wait=False).ok
    ca.wait_for("State", "stopping")
    ca.wait_for("State.SEVR", "MAJOR", timeout=HALT_TIMEOUT + 5)  # stuck: in alarm
    assert "Halt gives the RunEngine up" in ca.get_text("Status")
    refused = ca.put("Abort", 1)
    assert not refused.ok
    assert "refused: Abort: cannot abort: the RunEngine is stopping" in ca.get_text("Status")
    assert ca.get("Busy") == "Busy"

    sent = time.monotonic()
    assert ca.put("Halt", 1, timeout=HALT_TIMEOUT + 10).ok  # completes when the plan ended
    assert time.monotonic() - sent < HALT_TIMEOUT + 3.0
    assert start.wait(10) == 0  # the Start put completed: the plan is over
    assert (ca.get("State"), ca.get("Busy"), ca.get("ExitStatus")) == ("idle", "Idle", "abort")
    assert ca.get("State.SEVR") == "NO_ALARM"
    assert "given up" in ca.get_text("Status")
    (stop,) = stop_documents(ioc.data_dir).values()
    assert stop["exit_status"] == "abort" and "given up" in stop["reason"]
    assert stop["num_events"]["primary"] >= 1

    # a fresh RunEngine runs the next plan
    ca.configure("count", {"detectors": ["det"], "num": 3})
    assert ca.put("Start", 1).ok
    assert ca.get("ExitStatus") == "success"
    assert len(stop_documents(ioc.data_dir)) == 2
    # and, out of sight, a fresh worker process takes over from the one with threads left behind
    assert ioc.proc is not None
    wait_until(lambda: children(ioc.proc.pid) not in ([], [tainted]), 60, what="a new worker")
    assert ca.get("WorkerRestarts") == "0"  # a replacement, not a restart

    # SIGTERM during a hung cleanup (on the fresh RunEngine): a prompt, clean exit
    ca.configure("stuck_cleanup", {"detectors": ["det"], "axis": "stuck"})
    ca.start_put("Start", 1)
    ca.wait_for("CurrentPoint", lambda v: int(v) >= 1)
    assert ca.put("Stop", 1, wait=False).ok
    ca.wait_for("State", "stopping")
    sent = time.monotonic()
    ioc.send_signal(signal.SIGTERM)
    assert ioc.wait(HALT_TIMEOUT + 10) == 0
    assert time.monotonic() - sent < HALT_TIMEOUT + 4.0
    stops = stop_documents(ioc.data_dir)
    assert len(stops) == 3 and all(stop["exit_status"] in EXIT.values() for stop in stops.values())
