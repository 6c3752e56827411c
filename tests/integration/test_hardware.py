"""The simulated beamline on EPICS base's softIoc, driven through the RunEngine IOC."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runengine_ioc.data.files import read_run

BEAMLINE_PROFILE = str(Path(__file__).with_name("profile_beamline_tests.py"))
SHIPPED_PROFILE = "runengine_ioc.sim.profiles.softioc_beamline"


def events(path: Path) -> list[dict]:
    return [doc for name, doc in read_run(path) if name == "event"]


def test_a_scan_on_the_softioc_beamline(make_ioc, beamline):
    ioc = make_ioc(profile=SHIPPED_PROFILE, hardware=beamline)
    assert ioc.ca.get_list("DeviceList") == ["beam_current", "det1", "det2", "m1", "m2"]
    ioc.ca.configure(
        "scan", {"detectors": ["det1", "det2"], "motor": "m1", "start": -1, "stop": 1, "num": 5}
    )
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success", ioc.ca.get_text("Status")
    readings = events(ioc.runs()[-1])
    assert [e["seq_num"] for e in readings] == [1, 2, 3, 4, 5]
    positions = [e["data"]["m1_readback"] for e in readings]
    assert positions == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])  # arrived before reading
    det1 = [e["data"]["det1"] for e in readings]
    assert det1[2] == max(det1)  # the peak is at m1 = 0
    # each reading is taken where the motor arrived (2 % noise, 100 mA beam)
    expected = [1000 * math.exp(-x * x / 2) for x in positions]
    assert det1 == pytest.approx(expected, rel=0.02)
    assert beamline.ca.get("m1:RBV") == "1"
