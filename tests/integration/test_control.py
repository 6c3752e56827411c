"""Pause, resume, stop, abort and halt of running and paused plans; one plan at a time."""

from __future__ import annotations

import pytest

from runengine_ioc.data.files import read_run

LONG_COUNT = {"detectors": ["det", "probe"], "num": 400, "delay": 0.05}


def start_long_plan(ioc):  # type: ignore[no-untyped-def]
    ioc.ca.configure("count", LONG_COUNT)
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 3)
    return pending


def stop_document(ioc) -> dict:  # type: ignore[no-untyped-def]
    name, doc = read_run(ioc.runs()[-1])[-1]
    assert name == "stop"
    return doc


def test_pause_and_resume_a_running_plan(ioc):
    pending = start_long_plan(ioc)
    assert ioc.ca.put("Pause", 1).ok
    ioc.ca.wait_for("State", "paused")
    assert ioc.ca.get_alarm("State") == ("MINOR", "STATE")
    point = int(ioc.ca.get("CurrentPoint"))
    assert ioc.ca.get("Busy") == "Busy"
    assert ioc.ca.get("Start") == "Start"  # still busy while paused
    assert "paused" in ioc.ca.get_text("Status")
    assert pending.poll() is None  # the Start put is still pending

    assert ioc.ca.put("Resume", 1).ok
    ioc.ca.wait_for("State", "running")
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) > point)
    assert ioc.ca.put("Stop", 1).ok
    assert pending.wait(30) == 0
    assert ioc.ca.get("State") == "idle"


def test_deferred_pause_waits_for_a_checkpoint(ioc):
    start_long_plan(ioc)
    assert ioc.ca.put("PauseDeferred", 1).ok
    ioc.ca.wait_for("State", "paused")
    assert ioc.ca.put("Abort", 1).ok
    assert ioc.ca.get("State") == "idle"


@pytest.mark.parametrize(
    ("command", "exit_status", "stop_exit_status"),
    [("Stop", "success", "success"), ("Abort", "abort", "abort"), ("Halt", "abort", "abort")],
)
@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_stop_abort_halt_end_a_plan(ioc, command, exit_status, stop_exit_status, paused):
    pending = start_long_plan(ioc)
    if paused:
        assert ioc.ca.put("Pause", 1).ok
        ioc.ca.wait_for("State", "paused")
    result = ioc.ca.put(command, 1)
    assert result.ok, result.stdout + result.stderr
    # a put with callback to Stop/Abort/Halt completes once the plan has ended
    assert ioc.ca.get("State") == "idle"
    assert pending.wait(30) == 0
    assert ioc.ca.get("ExitStatus") == exit_status
    assert ioc.ca.get("Busy") == "Idle"
    assert stop_document(ioc)["exit_status"] == stop_exit_status
    assert int(ioc.ca.get("CurrentPoint")) < LONG_COUNT["num"]
    # the IOC takes the next plan
    ioc.ca.configure("count", {"detectors": ["det"], "num": 2})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_start_is_refused_while_a_plan_is_in_progress(ioc, paused):
    pending = start_long_plan(ioc)
    if paused:
        assert ioc.ca.put("Pause", 1).ok
        ioc.ca.wait_for("State", "paused")
    first_uid = ioc.ca.get("RunUid")
    refused = ioc.ca.put("Start", 1)
    assert not refused.ok
    status = ioc.ca.get_text("Status")
    assert status.startswith("refused: Start:")
    assert "one plan at a time" in status
    assert ioc.ca.get("RunUid") == first_uid
    assert ioc.ca.get("State") == ("paused" if paused else "running")
    if paused:
        assert ioc.ca.put("Resume", 1).ok
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 8)
    assert ioc.ca.put("Abort", 1).ok
    assert pending.wait(30) == 0
    assert len(ioc.runs()) == 1


def test_commands_that_do_not_fit_the_state_are_refused(ioc):
    for command in ("Pause", "PauseDeferred", "Resume", "Stop", "Abort", "Halt"):
        result = ioc.ca.put(command, 1)
        assert not result.ok, command
        assert ioc.ca.get_text("Status").startswith(f"refused: {command}:")
        assert ioc.ca.get("State") == "idle"
    start_long_plan(ioc)
    assert not ioc.ca.put("Resume", 1).ok
    assert "cannot resume" in ioc.ca.get_text("Status")
    assert ioc.ca.get("State") == "running"
    assert ioc.ca.put("Abort", 1).ok


def test_pending_start_leaves_every_pv_readable_and_writable(ioc):
    pending = start_long_plan(ioc)
    for suffix in ("State", "Status", "Progress", "PlanList", "RunUid", "ElapsedTime"):
        assert ioc.ca.try_get(suffix) is not None, suffix
    assert ioc.ca.put("Pause", 1).ok
    assert ioc.ca.get("State") in ("pausing", "paused")
    assert ioc.ca.put("Abort", 1).ok
    assert pending.wait(30) == 0


def test_client_disconnecting_mid_plan_does_not_affect_it(ioc):
    ioc.ca.configure("count", {"detectors": ["det"], "num": 30, "delay": 0.05})
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 2)
    pending.kill()
    ioc.ca.wait_for("State", "idle", timeout=30)
    assert ioc.ca.get("ExitStatus") == "success"
    assert ioc.ca.get("CurrentPoint") == "30"
    assert stop_document(ioc)["exit_status"] == "success"
