"""A client putting junk in a loop: each refusal fails its put and says why in Status, and the
IOC's log gets one short line per refusal, a few per client at most, never a traceback."""

from __future__ import annotations

from tests.polling import wait_until

REFUSAL_LINE = "INFO runengine_ioc.ca.refusal_log: refused put by "


def test_refused_puts_log_one_rate_limited_line_each_and_no_traceback(ioc):
    junk = [("PlanName", "launch_rocket", False), ("Start", 7, False), ("PlanArgs", "{bad", True)]
    for i in range(12):
        pv, value, string = junk[i % len(junk)]
        result = ioc.ca.put(pv, value, string=string)
        assert not result.ok
        assert ioc.ca.get_text("Status").startswith(f"refused: {pv}: ")
    wait_until(lambda: REFUSAL_LINE in ioc.log(), 10, what="a refusal line in the IOC's log")
    log = ioc.log()
    # no traceback of a refused write (caproto's beacons may still fail noisily on loopback)
    assert "handle_write" not in log and "ArgumentError" not in log
    assert "Invalid write request" not in log
    refusals = [line for line in log.splitlines() if REFUSAL_LINE in line]
    assert len(refusals) == 5, refusals  # the burst for one client (10 s window), then quiet
    first = refusals[0].split(REFUSAL_LINE, 1)[1]
    assert first.endswith(
        " to PlanName: unknown plan 'launch_rocket'; known plans: count, "
        "fail_after, grid_scan, list_scan, mv, rel_grid_scan, rel_scan, scan"
    )
    assert "to Start: " in refusals[1] and "is not a state index of this PV" in refusals[1]
    assert ioc.ca.get("State") == "idle"
