"""Monitor fan-out: a client that stops reading costs bounded memory and delays nobody else.

caproto's fan-out waited on the stalled client's full queue, after which no client got any
monitor again, and its queue of updates grew without bound (ca/fanout.py replaces it, as
EPICS base's server behaves). With ``--max-rate 200`` and 20 subscriptions to each array
the IOC from before the fix froze after :data:`BASELINE_FREEZE_S` seconds of this plan (78 s
with one each; RSS 123 -> 310 MB); the stalled client is held well beyond that.
"""

from __future__ import annotations

import time

from tests.polling import wait_until

from .ca_tools import monitor_values
from .stalled_client import StalledClient
from .test_quiet_log import _noise

#: Seconds of a fast plan after which the IOC before the fix froze every client's monitors
#: (measured with this test's scenario on the commit before ca/fanout.py).
BASELINE_FREEZE_S = 7.0
HOLD_S = 3 * BASELINE_FREEZE_S
COPIES = 20
ARRAYS = ["Data:X", "Data:Y1", "Data:Y2", "Data:Y3", "Data:Y4"]
FAST = ("--max-rate", "200", "--monitor-batch-time", "0.002")
#: RSS may grow this much while the stalled client is held (before: 110 -> 590 MB and on).
RSS_BOUND_MB = 60.0


def _updates(monitor, suffix: str) -> int:  # type: ignore[no-untyped-def]
    return len(monitor_values(monitor.output, suffix))


def _rss(ioc) -> float:  # type: ignore[no-untyped-def]
    return float(ioc.ca.get("Diag:RSS"))


def _start_long_count(ioc) -> None:  # type: ignore[no-untyped-def]
    ioc.ca.configure("count", {"detectors": ["det"], "num": 1_000_000})
    ioc.ca.start_put("Start", 1)
    ioc.ca.wait_for("State", "running")


def _keeps_updating(monitor, suffix: str, what: str, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    seen = _updates(monitor, suffix)
    wait_until(lambda: _updates(monitor, suffix) > seen, timeout, what=what)


def test_a_client_that_never_reads_neither_freezes_others_nor_grows_the_ioc(make_ioc):
    ioc = make_ioc(*FAST, "--client-timeout", "600")  # held, not dropped, for this test
    names = [ioc.ca.pv(name) for name in ARRAYS]
    rss_before = _rss(ioc)
    with StalledClient(ioc.port, names, copies=COPIES):
        watcher = ioc.ca.monitor("CurrentPoint")
        _start_long_count(ioc)
        peak = rss_before
        held_until = time.monotonic() + HOLD_S
        while time.monotonic() < held_until:
            _keeps_updating(watcher, "CurrentPoint", "the other client's monitor, on time")
            peak = max(peak, _rss(ioc))
        assert peak - rss_before < RSS_BOUND_MB, (rss_before, peak)
        # a client connecting now gets its first value at once, and then updates
        late = ioc.ca.monitor("CurrentPoint")
        _keeps_updating(late, "CurrentPoint", "a new camonitor's updates", timeout=5.0)
    _keeps_updating(watcher, "CurrentPoint", "updates after the stalled client left")
    assert _noise(ioc.log()) == []  # no "high load" warnings, no tracebacks
    assert ioc.ca.put("Abort", 1).ok
    ioc.ca.wait_for("State", "idle")
    watcher.finish()
    late.finish()


def test_a_client_that_reads_nothing_for_the_client_timeout_is_disconnected(make_ioc):
    ioc = make_ioc(*FAST, "--client-timeout", "2")
    with StalledClient(ioc.port, [ioc.ca.pv(n) for n in ARRAYS], copies=COPIES) as stalled:
        watcher = ioc.ca.monitor("CurrentPoint")
        _start_long_count(ioc)
        wait_until(
            lambda: "disconnecting the client" in ioc.log(), 20.0, what="the stalled client dropped"
        )
        assert stalled.closed_by_server(timeout=10.0)
        _keeps_updating(watcher, "CurrentPoint", "the other client's monitor")
    assert ioc.ca.put("Abort", 1).ok
    ioc.ca.wait_for("State", "idle")
    watcher.finish()
    assert "read nothing for 2 s" in ioc.log()


def test_clients_that_come_and_go_leave_nothing_behind(ioc):
    """caproto kept each closed circuit (its queues, buffers and command task): a `caput` a
    minute grew the IOC without bound. Each caget/caput here is a client of its own."""
    ca = ioc.ca
    baseline_clients = int(ca.get("Diag:Clients"))  # the reading caget counts itself
    baseline_tasks = int(ca.get("Diag:Tasks"))
    for index in range(40):
        ca.put_ok("Metadata", {"n": index}, string=True)
    wait_until(lambda: int(ca.get("Diag:Clients")) <= baseline_clients, 10, what="clients gone")
    wait_until(lambda: int(ca.get("Diag:Tasks")) <= baseline_tasks + 5, 10, what="tasks ended")
