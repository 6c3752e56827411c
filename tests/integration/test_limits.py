"""Limits over real Channel Access: no single put takes the IOC down, overflows a PV or
falsifies a start document.

- a plan beyond ``--max-points`` is refused at put (PlanArgs, a form field) and at Start,
  before its generator is made, and the IOC keeps answering;
- a point count beyond a longin shows clamped with a MINOR alarm, never wrapped or unreadable;
- Metadata may not set what the plan, the RunEngine, the IOC or the profile set, nor anything
  that could not be saved.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from runengine_ioc.data.files import read_run

from .conftest import loopback_env

SCAN = {"detectors": ["det"], "motor": "motor", "start": -1, "stop": 1, "num": 5}
GRID = {
    "detectors": ["det"],
    "motor1": "motor1",
    "start1": 0,
    "stop1": 1,
    "num1": 20000,
    "motor2": "motor2",
    "start2": 0,
    "stop2": 1,
    "num2": 20000,
}

LIMITS_PROFILE = '''
from collections.abc import Sequence

import bluesky.plans as bp
from bluesky.protocols import Readable
from runengine_ioc import DEFAULT_PLANS, Profile
from runengine_ioc.sim.profiles.sim import build_profile as sim


def claims(detectors: Sequence[Readable], points: int = 2):
    """A count whose start document claims 2**points points (as a plan of its own may)."""
    return (yield from bp.count(detectors, num=2, md={"num_points": 2**points}))


def build_profile():
    return Profile(
        devices=sim().devices,
        plans=[*DEFAULT_PLANS, claims],
        metadata={"beamline_id": "TST"},
        max_points={max_points},
    )
'''

CLI = (sys.executable, "-m", "runengine_ioc.cli")

RESERVED_PARAMETER_PLAN = '''

def takes_start(Start: int = 1):
    """A plan whose parameter would be served as the form's own Start PV."""
    yield from ()
'''


def refused(ioc, result, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    """The put failed, Status says why in words, and the IOC is idle and answering."""
    assert not result.ok, "the put should have failed"
    status = ioc.ca.get_text("Status")
    assert status.startswith("refused:"), status
    for fragment in fragments:
        assert fragment in status, status
    assert "Error(" not in status and "Traceback" not in status, status
    assert ioc.ca.get("State") == "idle"
    return status


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_plan_too_big_is_refused_at_put_and_at_start_before_anything_runs(ioc):
    ca = ioc.ca
    assert ioc.proc is not None
    before = rss_mb(ioc.proc.pid)
    # at Start: arguments stored before any plan was selected are checked at Start
    assert ca.get("PlanName") == ""
    ca.put_ok("PlanArgs", {**SCAN, "num": 2**31 - 1}, string=True)
    assert "no plan selected yet" in ca.get_text("Status")
    ca.put_ok("PlanName", "scan")
    refused(ioc, ca.put("Start", 1), "Start: scan: 2147483647 points", "at most 1000000 points")
    assert ioc.runs() == []
    assert ca.get("Busy") == "Idle"

    # at put
    result = ca.put("PlanArgs", {**SCAN, "num": 2**31 - 1}, string=True)
    refused(ioc, result, "PlanArgs: scan: 2147483647 points", "at most 1000000 points")
    ca.put_ok("PlanName", "grid_scan")
    result = ca.put("PlanArgs", GRID, string=True)
    refused(ioc, result, "400000000 points (num1 20000 x num2 20000)")
    ca.put_ok("PlanName", "list_scan")
    positions = {"detectors": ["det"], "motor": "motor", "positions": [0] * 1300}
    ca.put_ok("PlanArgs", positions, string=True)  # 1300 points, within the PV: accepted
    # the IOC did not start building a trajectory (16 GB for the scan, 3 GB for the grid)
    assert rss_mb(ioc.proc.pid) < before + 100
    ca.configure("scan", SCAN)
    assert ca.put("Start", 1).ok, ca.get_text("Status")
    assert ca.get("ExitStatus") == "success"


def test_a_grid_too_big_is_refused_field_by_field_on_its_form(ioc):
    ca = ioc.ca
    ca.put_ok("grid_scan:num1", 20000)
    result = ca.put("grid_scan:num2", 20000)
    refused(ioc, result, "grid_scan:num2:", "400000000 points (num1 20000 x num2 20000)")
    assert ca.get("grid_scan:num2") != "20000"
    ca.put_ok("grid_scan:num2", 50)  # 1,000,000 points: exactly the limit
    result = ca.put("grid_scan:num1", 20001)
    refused(ioc, result, "1000050 points")
    ca.put_ok("grid_scan:num1", 2)
    for field, value in GRID.items():
        if not field.startswith("num"):
            text = " ".join(value) if field == "detectors" else value
            ca.put_ok(f"grid_scan:{field}", text, string=field == "detectors")
    assert ca.put("grid_scan:Start", 1).ok, ca.get_text("Status")  # 100 points
    assert ca.get("ExitStatus") == "success"
    start = read_run(ioc.runs()[-1])[0][1]
    assert start["num_points"] == 100


def test_max_points_flag_and_counts_beyond_a_longin(make_ioc, tmp_path):
    profile = tmp_path / "limits.py"
    profile.write_text(LIMITS_PROFILE.replace("{max_points}", "None"))
    ioc = make_ioc("--max-points", "10", profile=str(profile))
    ca = ioc.ca
    ca.put_ok("PlanName", "count")
    refused(ioc, ca.put("PlanArgs", {"detectors": ["det"], "num": 11}, string=True), "at most 10")
    ca.configure("count", {"detectors": ["det"], "num": 10})
    assert ca.put("Start", 1).ok
    assert ca.get("TotalPoints") == "10"
    assert ca.get("Progress") == "100"
    assert ca.get_alarm("TotalPoints") == ("NO_ALARM", "NO_ALARM")

    # a start document that claims more points than a longin holds: clamped, MINOR alarm
    for power, shown in ((70, 2**31 - 1), (31, 2**31 - 1), (4, 16)):
        ca.configure("claims", {"detectors": ["det"], "points": power})
        assert ca.put("Start", 1).ok
        assert ca.get("ExitStatus") == "success", ca.get_text("Status")
        start = read_run(ioc.runs()[-1])[0][1]
        assert start["num_points"] == 2**power
        assert ca.get("TotalPoints") == str(shown)
        assert ca.get("CurrentPoint") == "2"
        expected = ("MINOR", "HIGH") if shown != 2**power else ("NO_ALARM", "NO_ALARM")
        assert ca.get_alarm("TotalPoints") == expected
        progress = float(ca.get("Progress"))
        # from the counts, not the clamped PV: 2 of 2**31 is 1e-7 %, not 2 of 2147483647
        assert progress == 12.5 if power == 4 else progress < 1e-6, progress
    # a new plan clears the alarm
    ca.configure("count", {"detectors": ["det"], "num": 3})
    assert ca.put("Start", 1).ok
    assert ca.get("TotalPoints") == "3"
    assert ca.get_alarm("TotalPoints") == ("NO_ALARM", "NO_ALARM")


def test_metadata_may_not_falsify_the_start_document_nor_be_unsaveable(ioc):
    ca = ioc.ca
    ca.put_ok("Metadata", {"sample": "Si"}, string=True)
    cases = [
        ({"num_points": 3}, "num_points (set by the plan)"),
        ({"plan_args": {"num": 999}}, "plan_args (set by the plan)"),
        ({"detectors": ["FAKE"], "motors": ["m"]}, "detectors, motors (set by the plan)"),
        ({"hints": {}}, "hints (set by the plan)"),
        ({"versions": {}}, "versions (set by the RunEngine)"),
        ({"scan_id": 7}, "scan_id (set by the RunEngine)"),
        ({"started_by": "me"}, "started_by (set by the IOC)"),
        ({"profile": "mine"}, "profile (set by the profile)"),
        ('{"x": NaN}', "NaN is not a number JSON allows"),
        ('{"x": [1, -Infinity]}', "-Infinity is not a number JSON allows"),
        ({"x": 2**70}, "beyond 64 bits"),
        ({"data_groups": 5}, "data_groups: 5 is not of type 'array'"),
        ({"a.b": 1}, "key 'a.b'"),
        ('{"x": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 16 levels"),
    ]
    for metadata, fragment in cases:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        result = ca.put("Metadata", text, string=True)
        refused(ioc, result, "Metadata", fragment)
        assert json.loads(ca.get_text("Metadata")) == {"sample": "Si"}

    ca.configure("count", {"detectors": ["det"], "num": 3}, {"sample": "Si", "operator": "ann"})
    assert ca.put("Start", 1).ok
    docs = read_run(ioc.runs()[-1])
    start = docs[0][1]
    assert start["num_points"] == 3
    assert start["detectors"] == ["det"]
    assert start["sample"] == "Si" and start["profile"] == "tests"
    assert sum(1 for name, _ in docs if name == "event") == 3


def test_a_parameter_named_like_a_form_pv_refuses_the_whole_profile(
    make_ioc, tmp_path, repeater_port
):
    profile = tmp_path / "limits.py"
    good = LIMITS_PROFILE.replace("{max_points}", "None")
    profile.write_text(good)
    ioc = make_ioc(profile=str(profile))
    profile.write_text(
        good.replace("plans=[*DEFAULT_PLANS, claims]", "plans=[*DEFAULT_PLANS, takes_start]")
        + RESERVED_PARAMETER_PLAN
    )
    status = refused(ioc, ioc.ca.put("Reload", 1), "Reload:", "parameter 'Start'", "rename")
    assert "takes_start" in status
    # nothing of it was served: the old plans and forms are all there, nothing half-built
    assert "claims" in ioc.ca.get_list("PlanList")
    assert "takes_start" not in ioc.ca.get_list("PlanList")
    assert ioc.ca.try_get("takes_start:Doc", timeout=1) is None
    assert ioc.ca.get_text("claims:Doc").startswith("A count whose")

    # and at start-up: refused with a message, exit status 2 (not a crash)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = loopback_env(port, repeater_port)
    proc = subprocess.run(
        [*CLI, "--profile", str(profile), "--prefix", "TR:", "--data-dir", str(tmp_path / "d2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "parameter 'Start'" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
