"""Bad input is refused before anything moves: a failed put, a precise Status, nothing lost."""

from __future__ import annotations

import pytest

SCAN = {"detectors": ["det"], "motor": "motor", "start": -1, "stop": 1, "num": 5}


def assert_refused(ioc, result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert not result.ok, "the put should have failed"
    status = ioc.ca.get_text("Status")
    assert status.startswith("refused:"), status
    assert fragment in status, status
    assert ioc.ca.get("State") == "idle"
    assert ioc.ca.get("Busy") == "Idle"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ('{"detectors": ["det"], "motor": "motor", "start": -1', "not valid JSON"),
        ('["det", "motor"]', "must be a JSON object"),
        ({**SCAN, "nmu": 3}, "unknown argument 'nmu'"),
        ({**SCAN, "num": "ten"}, "argument 'num': expected an integer, got 'ten'"),
        ({**SCAN, "num": 0}, "argument 'num'"),
        ({**SCAN, "start": "left"}, "argument 'start'"),
        ({**SCAN, "detectors": ["detx"]}, "unknown device 'detx'"),
        ({**SCAN, "motor": "det"}, "'det' is a readable device, not a movable one"),
        ({**SCAN, "detectors": []}, "at least one device is needed"),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "unknown-argument",
        "wrong-type",
        "out-of-range",
        "string-for-number",
        "unknown-device",
        "detector-for-motor",
        "no-detectors",
    ],
)
def test_bad_plan_arguments_are_refused_at_put(ioc, arguments, fragment):
    ioc.ca.put_ok("PlanName", "scan")
    ioc.ca.put_ok("PlanArgs", SCAN, string=True)
    result = ioc.ca.put("PlanArgs", arguments, string=True)
    assert_refused(ioc, result, "PlanArgs: ")
    assert fragment in ioc.ca.get_text("Status")
    # the previous, valid arguments are kept and still run
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert len(ioc.runs()) == 1


def test_unknown_plan_name_is_refused(ioc):
    ioc.ca.put_ok("PlanName", "count")
    result = ioc.ca.put("PlanName", "launch_rocket")
    assert_refused(ioc, result, "unknown plan 'launch_rocket'; known plans: count")
    assert ioc.ca.get("PlanName") == "count"


def test_too_long_plan_name_is_refused(ioc):
    result = ioc.ca.put("PlanName", "scan" * 20)
    assert_refused(ioc, result, "unknown plan")


def test_too_long_plan_args_are_refused_by_channel_access(ioc):
    ioc.ca.put_ok("PlanName", "count")
    ioc.ca.put_ok("PlanArgs", {"detectors": ["det"]}, string=True)
    result = ioc.ca.put("PlanArgs", {"detectors": ["det"], "pad": "x" * 5000}, string=True)
    assert not result.ok
    assert '{"detectors": ["det"]}' in ioc.ca.get_text("PlanArgs").replace("\\", "")


def test_missing_argument_is_refused_at_put(ioc):
    ioc.ca.put_ok("PlanName", "scan")
    result = ioc.ca.put("PlanArgs", {"detectors": ["det"], "motor": "motor"}, string=True)
    assert_refused(ioc, result, "PlanArgs: scan: missing argument 'start'")


def test_arguments_for_another_plan_are_refused_at_start(ioc):
    ioc.ca.put_ok("PlanName", "count")
    ioc.ca.put_ok("PlanArgs", {"detectors": ["det"], "num": 2}, string=True)
    ioc.ca.put_ok("PlanName", "scan")  # PlanArgs still holds count's arguments
    result = ioc.ca.put("Start", 1)
    assert_refused(ioc, result, "Start: scan: missing argument 'motor'")
    assert ioc.runs() == []


def test_start_without_a_plan_is_refused(ioc):
    assert_refused(ioc, ioc.ca.put("Start", 1), "no plan selected")


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [('{"uid": "x"}', "may not set uid"), ("[1, 2]", "must be a JSON object"), ("{", "JSON")],
)
def test_bad_metadata_is_refused(ioc, metadata, fragment):
    assert_refused(ioc, ioc.ca.put("Metadata", metadata, string=True), fragment)


def test_refused_put_raises_an_alarm_only_until_the_next_good_put(ioc):
    ioc.ca.put_ok("PlanName", "count")
    assert not ioc.ca.put("PlanArgs", "{oops", string=True).ok
    assert ioc.ca.get("PlanArgs.SEVR") == "MAJOR"
    assert ioc.ca.get("State.SEVR") == "NO_ALARM"  # alarms are per PV, not per group
    ioc.ca.put_ok("PlanArgs", {"detectors": ["det"]}, string=True)
    assert ioc.ca.get("PlanArgs.SEVR") == "NO_ALARM"


def test_refusal_while_running_leaves_the_plan_untouched(ioc):
    ioc.ca.configure("count", {"detectors": ["det"], "num": 40, "delay": 0.05})
    pending = ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("CurrentPoint", lambda v: int(v) >= 2)
    assert not ioc.ca.put("PlanName", "nope").ok
    assert not ioc.ca.put("PlanArgs", "{bad", string=True).ok
    assert not ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("State") == "running"
    assert pending.wait(60) == 0
    assert ioc.ca.get("ExitStatus") == "success"
    assert ioc.ca.get("CurrentPoint") == "40"
