"""A plan that raises, and signals to the IOC while a plan runs: clean ends, nothing lost."""

from __future__ import annotations

import signal
import time

import pytest

from runengine_ioc.data.files import read_run


def test_a_failing_plan_is_cleaned_up_and_reported(make_ioc, tmp_path, monkeypatch):
    stage_log = tmp_path / "stage.log"
    monkeypatch.setenv("RE_IOC_STAGE_LOG", str(stage_log))
    ioc = make_ioc()
    ioc.ca.configure("fail_after", {"detectors": ["probe"], "points": 3, "message": "beam lost"})
    result = ioc.ca.put("Start", 1)
    assert result.ok  # the put completed: the plan ended (badly)
    assert ioc.ca.get("ExitStatus") == "fail"
    assert ioc.ca.get_alarm("ExitStatus") == ("MAJOR", "STATE")
    assert "RuntimeError: beam lost" in ioc.ca.get_text("Status")
    assert ioc.ca.get("State") == "idle"
    documents = read_run(ioc.runs()[-1])
    assert documents[-1][0] == "stop"
    assert documents[-1][1]["exit_status"] == "fail"
    assert "beam lost" in documents[-1][1]["reason"]
    assert [n for n, _ in documents].count("event") == 3
    assert stage_log.read_text().split() == ["stage", "unstage"]
    # the next Start works and clears the alarm
    ioc.ca.configure("count", {"detectors": ["det"], "num": 2})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert ioc.ca.get_alarm("ExitStatus") == ("NO_ALARM", "NO_ALARM")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_plan_ends_it_cleanly_and_exits_0(make_ioc, tmp_path, monkeypatch, sig):
    stage_log = tmp_path / "stage.log"
    monkeypatch.setenv("RE_IOC_STAGE_LOG", str(stage_log))
    ioc = make_ioc()
    ioc.ca.configure("count", {"detectors": ["probe"], "num": 1000, "delay": 0.05})
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 3)
    sent = time.monotonic()
    ioc.send_signal(sig)
    assert ioc.wait(timeout=10) == 0
    took = time.monotonic() - sent
    assert took < 5.0, f"exit took {took:.1f} s"
    documents = read_run(ioc.runs()[-1])
    name, stop = documents[-1]
    assert name == "stop"
    assert stop["exit_status"] == "abort"
    assert "IOC shutting down" in ioc.log()
    assert stage_log.read_text().split() == ["stage", "unstage"]
    # the client's pending `caput -c Start` ends by itself, completed (the plan ended before the
    # server went away), instead of hanging until its own time-out
    assert pending.wait(timeout=10) == 0, pending.output
    assert "New :" in pending.output


def test_scan_ids_continue_across_restarts(make_ioc, tmp_path):
    data = tmp_path / "shared-data"
    first = make_ioc(data_dir=data)
    first.ca.configure("count", {"detectors": ["det"], "num": 1})
    assert first.ca.put("Start", 1).ok
    assert first.ca.put("Start", 1).ok
    assert first.ca.get("ScanId") == "2"
    first.stop()
    second = make_ioc(data_dir=data)
    second.ca.configure("count", {"detectors": ["det"], "num": 1})
    assert second.ca.put("Start", 1).ok
    assert second.ca.get("ScanId") == "3"
    assert len(list(data.glob("*.jsonl"))) == 3
