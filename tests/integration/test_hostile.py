"""Hostile and heavy clients: random puts of every type, many monitors, a soak of short plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runengine_ioc.data.files import read_run
from tests.polling import poll

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


STATUS_PVS = (
    "State",
    "Status",
    "ExitStatus",
    "Busy",
    "ScanId",
    "RunUid",
    "CurrentPoint",
    "TotalPoints",
    "Progress",
    "ElapsedTime",
    "RemainingTime",
    "PlanCount",
)
SCAN_1000 = {"detectors": ["det"], "num": 1000, "delay": 0.005}


#: Slow-down of a plan under 50 monitoring clients that fails the test (see the test).
MONITOR_SLOWDOWN_BOUND = 4.0


def run_duration(path: Path) -> float:
    docs = read_run(path)
    return docs[-1][1]["time"] - docs[0][1]["time"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fifty_monitors_miss_no_state_transition(ioc):
    from .ca_tools import monitor_values

    ioc.ca.configure("count", SCAN_1000)
    assert ioc.ca.put("Start", 1).ok
    alone = run_duration(ioc.runs()[-1])

    monitors = [ioc.ca.monitor(*STATUS_PVS) for _ in range(50)]
    for monitor in monitors:  # each has its first State update: connected and subscribed
        assert _wait_output(monitor, ":State"), monitor.output
    assert ioc.ca.put("Start", 1).ok
    watched = run_duration(ioc.runs()[-1])
    ioc.ca.wait_for("PlanCount", "2")
    seen = []
    for monitor in monitors:
        output = monitor.finish(until=lambda out: "PlanCount 2" in " ".join(out.split()))
        states = monitor_values(output, ":State")
        seen.append(states)
        assert states == ["idle", "running", "idle"], states
    figures = (
        f"50 monitors x {len(STATUS_PVS)} PVs held; State transitions seen by each: "
        f"{len(seen[0]) - 1}; 1000-point count: {alone:.2f} s alone, {watched:.2f} s watched "
        f"(ratio {watched / alone:.3f})"
    )
    print(f"\n{figures}")
    # A generous bound, not a benchmark (benchmarks/ measures the ratio, interleaved with its
    # baseline): 1.55-2.4x was measured with the RunEngine in the IOC's process. Past 4x the
    # fan-out would be starving the RunEngine.
    assert watched / alone < MONITOR_SLOWDOWN_BOUND, figures


def _wait_output(monitor, suffix: str, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    def printed() -> bool:
        return any(
            line.split()[:1] and line.split()[0].endswith(suffix)
            for line in monitor.output.splitlines()
        )

    return poll(printed, timeout, interval=0.05) is not None


SOAK_DRIVER = """
import sys, epics
prefix, count = sys.argv[1], int(sys.argv[2])
start = epics.PV(prefix + "Start")
exit_status = epics.PV(prefix + "ExitStatus")
assert start.wait_for_connection(10) and exit_status.wait_for_connection(10)
failed = 0
for _ in range(count):
    start.put(1, wait=True, timeout=60)
    failed += exit_status.get(as_string=True, use_monitor=False) != "success"
print(failed)
"""


def diag(ioc) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {name: float(ioc.ca.get(f"Diag:{name}")) for name in ("RSS", "Threads", "Tasks")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_of_500_short_plans_stays_flat(ioc):
    from .hardware import process_figures

    def drive(count: int) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", SOAK_DRIVER, ioc.prefix, str(count)],
            env=ioc.env,
            capture_output=True,
            text=True,
            timeout=800,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "0", proc.stdout  # none failed

    ioc.ca.configure("count", {"detectors": ["det"], "num": 1})
    drive(20)  # warm-up: caches, first-use imports, circuits
    assert ioc.proc is not None
    before, proc_before = diag(ioc), process_figures(ioc.proc.pid)
    drive(500)
    after, proc_after = diag(ioc), process_figures(ioc.proc.pid)
    assert ioc.ca.get("PlanCount") == "520"
    assert len(ioc.runs()) == 520
    print(f"\nsoak of 500 plans: before {before} {proc_before}; after {after} {proc_after}")
    assert after["Threads"] <= before["Threads"] + 2
    assert after["Tasks"] <= before["Tasks"] + 2
    assert after["RSS"] - before["RSS"] < 50  # MB; the figures are in the report
