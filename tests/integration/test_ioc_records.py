"""The IOC's PVs behave as records toward every client: owned fields, limits, event masks,
long strings and readable refusals (over real Channel Access, EPICS base tools and caproto's
client)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from caproto import ChannelType

from tests.polling import wait_until

from .ca_tools import monitor_values
from .conftest import TEST_PROFILE, IOCProcess, _free_port, loopback_env
from .gate_clients import named_clients
from .pyepics_ops import pyepics

#: The record fields a client used to be able to rewrite, each with a value to try.
OWNED_FIELDS = [
    ("State.ZRST", "IDLE"),
    ("ExitStatus.TWST", "success"),
    ("Busy.ZNAM", "free"),
    ("Busy.ONAM", "taken"),
    ("Progress.EGU", "pct"),
    ("Progress.PREC", "5"),
    ("Progress.HOPR", "7"),
    ("Progress.LOPR", "3"),
    ("Progress.MDEL", "10"),
    ("Progress.ADEL", "10"),
    ("PlanName.DESC", "mine now"),
    ("scan:num.DRVL", "-5"),
    ("scan:num.DRVH", "5"),
    ("scan:motor.ZRST", "nothing"),
    ("Start.ONAM", "Go"),
]


@pytest.fixture(scope="module")
def ioc(tmp_path_factory: pytest.TempPathFactory, repeater_port: int) -> Iterator[IOCProcess]:
    """One IOC (test profile) for this module's tests: each leaves it idle."""
    tmp = tmp_path_factory.mktemp("records")
    port = _free_port()
    prefix = f"T{uuid.uuid4().hex[:8]}:"
    args = ["--prefix", prefix, "--data-dir", str(tmp / "data"), "--profile", str(TEST_PROFILE)]
    ioc = IOCProcess(prefix, port, loopback_env(port, repeater_port), tmp / "data", tmp / "l", args)
    try:
        ioc.start()
        yield ioc
    finally:
        ioc.stop()


def test_record_fields_are_the_iocs(ioc) -> None:  # type: ignore[no-untyped-def]
    """Every owned field refuses a put (caput fails, Status says why), keeping its value; a
    plan that fails afterwards still shows fail with a MAJOR alarm, Busy and PlanCount move,
    and State monitors follow the run (they stuck on ``running`` after a renamed ZRST)."""
    ca = ioc.ca
    before = {field: ca.get(field) for field, _ in OWNED_FIELDS}
    for field, value in OWNED_FIELDS:
        result = ca.put(field, value)
        assert not result.ok, f"{field} accepted {value!r}"
        status = ca.get_text("Status")
        assert status.startswith(f"refused: {field}: record fields belong to the IOC"), status
    assert {field: ca.get(field) for field, _ in OWNED_FIELDS} == before

    plans_ended = int(ca.get("PlanCount"))
    monitor = ca.monitor("State")
    ca.configure("fail_after", {"detectors": ["det"], "points": 1})
    ca.put("Start", 1)  # completes when the plan has ended (it fails)
    assert ca.wait_for("ExitStatus", "fail") == "fail"
    assert ca.get_alarm("ExitStatus") == ("MAJOR", "STATE")
    assert ca.get("Busy") == "Idle"
    assert ca.get("PlanCount") == str(plans_ended + 1)
    states = monitor_values(monitor.finish(lambda out: out.count("idle") >= 2), "State")
    assert states[0] == "idle" and "running" in states and states[-1] == "idle", states


def test_form_limits_reach_clients(ioc) -> None:  # type: ignore[no-untyped-def]
    """scan:num (``num >= 1``) serves 1..INT32_MAX as control and display limits, as
    DBR_CTRL_DOUBLE and to pyepics; an out-of-range put still names the argument."""
    ca = ioc.ca
    ctrl = ca.run("caget", "-d", "DBR_CTRL_DOUBLE", ca.pv("scan:num")).stdout
    assert "Lo ctrl limit:    1\n" in ctrl and "Hi ctrl limit:    2.14748e+09" in ctrl, ctrl
    assert "Lo disp limit:    1\n" in ctrl, ctrl
    assert ca.get("scan:num.DRVL") == "1" and ca.get("scan:num.DRVH") == "2147483647"
    assert ca.get("scan:num.HOPR") == "2147483647" and ca.get("scan:num.LOPR") == "1"
    progress = ca.run("caget", "-d", "DBR_CTRL_DOUBLE", ca.pv("Progress")).stdout
    assert "Hi disp limit:    100" in progress and "Hi alarm limit:   nan" in progress

    (limits,) = pyepics(ioc.env, [{"op": "ctrl", "pv": ca.pv("scan:num")}])
    assert (limits["lower_ctrl_limit"], limits["upper_ctrl_limit"]) == (1, 2**31 - 1)
    assert (limits["lower_disp_limit"], limits["upper_disp_limit"]) == (1, 2**31 - 1)

    result = ca.put("scan:num", 0)
    assert not result.ok
    assert ca.get_text("Status") == (
        "refused: scan:num: scan: argument 'num': must be greater than or equal to 1, got 0"
    )
    ca.put_ok("scan:num", 5)


def test_event_masks(ioc) -> None:  # type: ignore[no-untyped-def]
    """An alarm monitor gets only alarm changes, an archive monitor the archive deadband
    (ADEL 1 on Progress and the clocks), a value monitor every change; a put of the same
    value to a stringout posts nothing (EPICS posts on change)."""
    ca = ioc.ca
    names = ("Progress", "ExitStatus", "PlanName", "ElapsedTime", "State")
    pvs = [ca.pv(n) for n in names]
    by_mask = {
        mask: ca._background("camonitor", "-m", mask, "-t", "n", *pvs) for mask in ("va", "a", "l")
    }
    first = {n: ca.get(n) for n in ("PlanName", "ExitStatus")}  # the first updates
    for tool in by_mask.values():  # each has its first update of every PV
        wait_until(lambda tool=tool: tool.output.count("\n") >= len(pvs), 10, what="camonitor")
    ca.put_ok("PlanName", "scan")  # (no other test here selects scan)
    ca.put_ok("PlanName", "scan")  # the same again: no event at all
    ca.configure("count", {"detectors": ["det"], "num": 12, "delay": 0.1})
    ca.put_ok("Start", 1)
    ca.configure("fail_after", {"detectors": ["det"], "points": 1})
    ca.put("Start", 1)
    ca.wait_for("ExitStatus", "fail")
    out = {mask: tool.finish(lambda o: "fail" in o) for mask, tool in by_mask.items()}

    value = {n: monitor_values(out["va"], n) for n in names}
    alarm = {n: monitor_values(out["a"], n) for n in names}
    log = {n: monitor_values(out["l"], n) for n in names}
    shown = [first["PlanName"]] if first["PlanName"] else []  # "" is not listed
    assert value["PlanName"] == [*shown, "scan", "count", "fail_after"], value["PlanName"]
    # 12 points: progress goes up in steps of 8.3 %: every one to value monitors and the
    # archive (more than ADEL 1 each time)
    assert len(value["Progress"]) >= 12 and len(log["Progress"]) >= 12
    # the alarm monitor: the first update, then only the MAJOR alarm of fail
    assert alarm["Progress"] == ["0"], alarm["Progress"]
    assert alarm["PlanName"] == shown, alarm["PlanName"]
    assert alarm["State"] == ["idle"], alarm["State"]
    cleared = ["none"] if first["ExitStatus"] == "fail" else []  # MAJOR to no alarm
    assert alarm["ExitStatus"] == [first["ExitStatus"], *cleared, "fail"], alarm["ExitStatus"]
    # the archive gets the clock once it moved 1 s (the run lasts ~1.2 s): few updates
    assert len(log["ElapsedTime"]) < len(value["ElapsedTime"]), (log, value)


def test_event_masks_property(ioc) -> None:  # type: ignore[no-untyped-def]
    """A property monitor gets the first update only while nothing but values change."""
    ca = ioc.ca
    first = ca.get("PlanName")
    tool = ca._background("camonitor", "-m", "p", "-t", "n", ca.pv("PlanName"), ca.pv("State"))
    wait_until(lambda: tool.output.count("\n") >= 2, 10, what="camonitor")
    ca.put_ok("PlanName", "count")
    ca.configure("count", {"detectors": ["det"], "num": 2})
    ca.put_ok("Start", 1)  # completes when the plan has ended
    out = tool.finish()
    assert monitor_values(out, "PlanName") == ([first] if first else [])
    assert monitor_values(out, "State") == ["idle"]
    assert out.count("\n") == 2, out


def test_long_strings_and_plain_refusals(ioc) -> None:  # type: ignore[no-untyped-def]
    """Text EPICS clients could not read back whole is refused; refusals read as words."""
    ca = ioc.ca
    ca.put_ok("PlanName", "count")
    args = json.dumps({"detectors": ["det"], "num": 1})
    longest = args[:-1] + " " * (4095 - len(args)) + "}"  # 4095 bytes: fits, with its NUL
    with named_clients(ioc, ("ops", "localhost")) as (client,):  # caproto's client
        client.put_wait("PlanArgs", longest)
        assert len(ca.get_text("PlanArgs")) == 4095
        client.put("PlanArgs", longest + " ")  # a refusal answers with an error only
        wait_until(lambda: "4096 bytes" in ca.get_text("Status"), 10, what="the refusal")
        assert ca.get_text("Status") == (
            "refused: PlanArgs: 4096 bytes of text, more than it holds (4095 bytes): "
            "EPICS clients (caget -S) would read it cut; nothing was changed"
        )
        assert ca.get_text("PlanArgs") == longest  # unchanged

        # an mbbo form field: a client that sends the text gets the IOC's refusal in words
        client.pv("scan:motor").write([b"motr"], data_type=ChannelType.STRING, wait=False)
        wait_until(lambda: "motr" in ca.get_text("Status"), 10, what="the refusal")
        status = ca.get_text("Status")
        assert status.startswith('refused: scan:motor: "motr" is not one of its states ("", '), (
            status
        )

    assert not ca.put("PlanArgs", args).ok  # no -S: caput sends one DBR_STRING
    assert ca.get_text("Status") == (
        "refused: PlanArgs: text must be sent as an array of characters: use caput -S "
        "(without -S, caput sends one 40-character string, which a long-string PV does not take)"
    )
    assert not ca.put("Start", 2).ok
    assert ca.get_text("Status") == "refused: Start: 2 is not a state index of this PV (0 to 1)"
    assert not ca.put("Start", 1.5).ok
    assert ca.get_text("Status") == "refused: Start: 1.5 is not a state index of this PV (0 to 1)"
    # EPICS base's caput refuses a non-state itself: the IOC never hears of it (README)
    result = ca.put("scan:motor", "motr")
    assert not result.ok and "Enum string value 'motr' invalid" in result.stderr + result.stdout
