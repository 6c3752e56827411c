"""Plan forms over real Channel Access: typed PVs per parameter, discoverability, happi, Reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runengine_ioc.data.files import read_run

HAPPI_DB = Path(__file__).parent / "data" / "happi_sim.json"

RELOADABLE_PROFILE = """
from runengine_ioc import DEFAULT_PLANS, Profile
from runengine_ioc.sim.profiles.sim import build_profile as sim
{extra}

def build_profile():
    return Profile(devices=sim().devices, plans=[*DEFAULT_PLANS{plans}])
"""

EXTRA_PLAN = '''
from collections.abc import Sequence

import bluesky.plans as bp
from bluesky.protocols import Readable

def dark_count(detectors: Sequence[Readable], repeats: int = 2):
    """Count with the shutter closed."""
    yield from bp.count(detectors, num=repeats, md={"dark": True})
'''


def start_document(ioc) -> dict:  # type: ignore[no-untyped-def]
    return read_run(ioc.runs()[-1])[0][1]


def test_scan_runs_purely_through_its_form(ioc):
    ca = ioc.ca
    assert ca.get("scan:Doc", "-S").startswith("Step one motor")
    ca.put_ok("scan:detectors", "det1, det2", string=True)
    ca.put_ok("scan:motor", "motor1")
    ca.put_ok("scan:start", -2)
    ca.put_ok("scan:stop", 2)
    ca.put_ok("scan:num", 5)
    assert json.loads(ca.get_text("scan:Args")) == {
        "detectors": "det1, det2",
        "motor": "motor1",
        "start": -2.0,
        "stop": 2.0,
        "num": 5,
    }
    assert ca.put("scan:Start", 1).ok
    assert ca.get("ExitStatus") == "success"
    start = start_document(ioc)
    assert start["plan_name"] == "scan"
    assert start["plan_args"]["num"] == 5
    assert start["plan_args"]["args"][1:] == [-2.0, 2.0]
    assert start["motors"] == ["motor1"]
    assert start["detectors"] == ["det1", "det2"]


def test_grid_scan_runs_purely_through_its_form(ioc):
    ca = ioc.ca
    ca.put_ok("grid_scan:detectors", '["det4"]', string=True)
    for axis, motor, start, stop, num in ((1, "motor1", -1, 1, 3), (2, "motor2", -2, 2, 4)):
        ca.put_ok(f"grid_scan:motor{axis}", motor)
        ca.put_ok(f"grid_scan:start{axis}", start)
        ca.put_ok(f"grid_scan:stop{axis}", stop)
        ca.put_ok(f"grid_scan:num{axis}", num)
    ca.put_ok("grid_scan:snake", "True")
    assert ca.put("grid_scan:Start", 1).ok
    assert ca.get("ExitStatus") == "success"
    assert ca.get("CurrentPoint") == "12"
    start = start_document(ioc)
    assert start["plan_name"] == "grid_scan"
    assert start["shape"] == [3, 4]
    assert start["snaking"] == [False, True]


def test_form_fields_carry_types_defaults_units_and_limits(ioc):
    ca = ioc.ca
    assert ca.get("count:num") == "1"
    assert ca.get("count:num.RTYP") == "longout"
    assert ca.get("count:num.DRVL") == "1"
    assert ca.get("count:delay.RTYP") == "ao"
    assert ca.get("count:delay.EGU") == "s"
    assert ca.get("grid_scan:snake.RTYP") == "bo"
    assert ca.get("scan:motor.RTYP") == "mbbo"  # 6 movable candidates fit in 16 states
    assert ca.get("scan:detectors.RTYP") == "waveform"
    assert ca.get("list_scan:positions.RTYP") == "waveform"
    # a required field not yet put is flagged; a defaulted one is not
    assert ca.get("scan:start.SEVR") == "INVALID"
    assert ca.get("count:num.SEVR") == "NO_ALARM"
    ca.put_ok("scan:start", 1.5)
    assert ca.get("scan:start.SEVR") == "NO_ALARM"
    schema = json.loads(ca.get_text("scan:Schema"))
    assert schema["required"] == ["detectors", "motor", "start", "stop", "num"]
    assert "motor1" in schema["properties"]["motor"]["enum"]


@pytest.mark.parametrize(
    ("suffix", "value", "string", "fragment"),
    [
        (
            "scan:num",
            0,
            False,
            "scan:num: scan: argument 'num': must be greater than or equal to 1",
        ),
        ("count:delay", -1, False, "count:delay: count: argument 'delay'"),
        ("scan:detectors", "det nope", True, "unknown device 'nope'"),
        ("scan:detectors", " , ", True, "at least one device is needed"),
        ("list_scan:positions", "", False, "at least 1 item"),
    ],
    ids=["below-minimum", "negative-delay", "unknown-device", "no-detectors", "no-positions"],
)
def test_wrong_form_values_are_refused_at_put(ioc, suffix, value, string, fragment):
    if suffix == "list_scan:positions":
        result = ioc.ca.run("caput", "-c", "-a", ioc.ca.pv(suffix), "0")
    else:
        result = ioc.ca.put(suffix, value, string=string)
    assert not result.ok
    status = ioc.ca.get_text("Status")
    assert status.startswith("refused:"), status
    assert fragment in status, status
    assert ioc.ca.get("State") == "idle"


def test_a_detector_where_a_motor_is_needed_is_refused_by_the_drop_down(ioc):
    result = ioc.ca.put("scan:motor", "det")
    assert not result.ok
    assert ioc.ca.get("scan:motor") == ""


def test_form_start_without_required_fields_is_refused(ioc):
    ioc.ca.put_ok("scan:detectors", "det", string=True)
    result = ioc.ca.put("scan:Start", 1)
    assert not result.ok
    assert "scan: missing argument 'motor'" in ioc.ca.get_text("Status")
    assert ioc.runs() == []


def test_list_scan_takes_its_positions_from_a_number_waveform(ioc):
    ca = ioc.ca
    ca.put_ok("list_scan:detectors", "det", string=True)
    ca.put_ok("list_scan:motor", "motor")
    result = ca.run("caput", "-c", "-a", ca.pv("list_scan:positions"), "3", "0.5", "-1", "2")
    assert result.ok, result.stdout + result.stderr
    assert ca.put("list_scan:Start", 1).ok
    events = [doc for name, doc in read_run(ioc.runs()[-1]) if name == "event"]
    assert [e["data"]["motor"] for e in events] == [0.5, -1.0, 2.0]


def test_devices_by_component_name_and_device_info(ioc):
    info = json.loads(ioc.ca.get_text("DeviceInfo"))
    assert info["motor"]["kind"] == "movable"
    assert info["det"]["kind"] == "readable"
    assert "motor_setpoint" in info["motor"]["fields"]
    ioc.ca.configure("count", {"detectors": ["motor1.readback", "det"], "num": 2})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert start_document(ioc)["detectors"] == ["motor1", "det"]


def test_devices_come_from_a_happi_database(make_ioc):
    ioc = make_ioc("--happi-db", str(HAPPI_DB))
    devices = ioc.ca.get_list("DeviceList")
    assert {"hx_motor", "hx_det", "det"} <= set(devices)
    assert "hx_off" not in devices  # inactive items are not loaded
    ioc.ca.configure(
        "scan", {"detectors": ["hx_det"], "motor": "hx_motor", "start": 0, "stop": 1, "num": 3}
    )
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert "happi" in ioc.ca.get_text("Profile")


def test_reload_adds_a_plan_and_serves_its_form(make_ioc, tmp_path):
    profile = tmp_path / "beamline.py"
    profile.write_text(RELOADABLE_PROFILE.format(extra="", plans=""))
    ioc = make_ioc(profile=str(profile))
    assert "dark_count" not in ioc.ca.get_list("PlanList")
    assert ioc.ca.try_get("dark_count:Doc", timeout=1) is None

    profile.write_text(RELOADABLE_PROFILE.format(extra=EXTRA_PLAN, plans=", dark_count"))
    assert ioc.ca.put("Reload", 1).ok
    assert "dark_count" in ioc.ca.get_list("PlanList")
    assert "added: dark_count" in ioc.ca.get_text("Status")
    assert ioc.ca.get_text("dark_count:Doc") == "Count with the shutter closed."
    ioc.ca.put_ok("dark_count:detectors", "det", string=True)
    ioc.ca.put_ok("dark_count:repeats", 3)
    assert ioc.ca.put("dark_count:Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert start_document(ioc)["dark"] is True

    # and a reload that removes it: its PVs are no longer served
    profile.write_text(RELOADABLE_PROFILE.format(extra="", plans=""))
    assert ioc.ca.put("Reload", 1).ok
    assert "removed: dark_count" in ioc.ca.get_text("Status")
    assert ioc.ca.try_get("dark_count:Doc", timeout=1) is None
    assert not ioc.ca.put("PlanName", "dark_count").ok


def test_a_broken_profile_on_reload_leaves_the_old_one_serving(make_ioc, tmp_path):
    profile = tmp_path / "beamline.py"
    profile.write_text(RELOADABLE_PROFILE.format(extra="", plans=""))
    ioc = make_ioc(profile=str(profile))
    profile.write_text("def build_profile(:\n")  # a syntax error
    result = ioc.ca.put("Reload", 1)
    assert not result.ok
    status = ioc.ca.get_text("Status")
    assert status.startswith("refused: Reload:")
    assert "SyntaxError" in status
    assert "previous profile stays in service" in status
    ioc.ca.configure("count", {"detectors": ["det"], "num": 2})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"


def test_reload_is_refused_while_a_plan_runs(ioc):
    ioc.ca.configure("count", {"detectors": ["det"], "num": 100, "delay": 0.05})
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("State", "running")
    result = ioc.ca.put("Reload", 1)
    assert not result.ok
    assert "Reload only while idle" in ioc.ca.get_text("Status")
    assert ioc.ca.put("Abort", 1).ok
    assert pending.wait(30) == 0
