"""Hostile and heavy clients: random puts of every type, many monitors, a soak of short plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runengine_ioc.sinks import read_run

FUZZ = Path(__file__).with_name("fuzz_client.py")

FIXED_WRITABLE = (
    "PlanName",
    "PlanArgs",
    "Metadata",
    "Start",
    "Pause",
    "PauseDeferred",
    "Resume",
    "Stop",
    "Abort",
    "Halt",
    "Reload",
)
FORM_PVS = (
    "scan:detectors",
    "scan:motor",
    "scan:start",
    "scan:num",
    "scan:Start",
    "count:num",
    "count:delay",
    "count:Start",
    "mv:position",
    "grid_scan:snake",
)


def fuzz(ioc, seed: int, count: int) -> dict:  # type: ignore[no-untyped-def]
    names = [ioc.ca.pv(s) for s in (*FIXED_WRITABLE, *FORM_PVS)]
    proc = subprocess.run(
        [sys.executable, str(FUZZ), str(seed), str(count), ioc.ca.pv("Status"), *names],
        env=ioc.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fuzzing_every_writable_pv_idle_and_during_a_plan(ioc):
    idle = fuzz(ioc, seed=1, count=2500)
    print(f"\nidle: {idle}")
    assert idle["figures"].get("refused_without_status", 0) == 0, idle["unexplained"]
    assert idle["unexplained"] == []  # every put answered
    assert ioc.runs() == []  # no junk started a plan
    assert ioc.ca.get("State") == "idle"
    assert ioc.ca.get("PlanCount") == "0"

    ioc.ca.configure("count", {"detectors": ["det"], "num": 100000, "delay": 0.005}, {"tag": "ok"})
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 3)
    busy = fuzz(ioc, seed=2, count=2500)
    print(f"during a plan: {busy}")
    assert busy["figures"].get("refused_without_status", 0) == 0, busy["unexplained"]
    assert busy["unexplained"] == []
    assert ioc.ca.get("State") == "running"
    assert ioc.ca.put("Stop", 1).ok
    assert pending.wait(30) == 0
    assert ioc.ca.get("ExitStatus") == "success"
    (path,) = ioc.runs()  # one run: the one started on purpose
    docs = read_run(path)
    start = docs[0][1]
    assert start["tag"] == "ok" and start["num_points"] == 100000 and start["plan_name"] == "count"
    seq = [doc["seq_num"] for name, doc in docs if name == "event"]
    assert seq == list(range(1, len(seq) + 1))
    assert docs[-1][0] == "stop" and docs[-1][1]["num_events"]["primary"] == len(seq)
    # still serving, still taking a plan
    ioc.ca.configure("count", {"detectors": ["det"], "num": 2})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    tried = idle["figures"]["tried"] + busy["figures"]["tried"]
    print(f"fuzz inputs tried: {tried}")
