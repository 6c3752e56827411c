"""A healthy IOC's log has no warnings and no tracebacks: a plain start-up and a plan.

Before: caproto logged a "Failed to send beacon" traceback every beacon period unless
EPICS_CAS_BEACON_PORT was set (it aims beacons at 5065, not at EPICS_CA_REPEATER_PORT as
EPICS base does), and eight backlog warnings for the forms' Schema PVs at each start-up.
"""

from __future__ import annotations

import re
import socket

import caproto as ca

from .conftest import _free_port

#: A line of a quiet log: INFO or DEBUG, in our format or caproto's. Anything else (warnings,
#: errors, tracebacks, and what a logger without a handler prints bare) is noise.
QUIET = re.compile(r"\d{4}-\d\d-\d\d [\d:,]+ (?:INFO|DEBUG) |\[[ID] \d")


def _noise(log: str) -> list[str]:
    return [line for line in log.splitlines() if line and not QUIET.match(line)]


def test_a_start_up_and_a_plan_log_no_warning_and_no_traceback(make_ioc):
    ioc = make_ioc()
    ioc.ca.configure("count", {"detectors": ["det"], "num": 3})
    ioc.ca.put_ok("Start", 1)
    assert ioc.ca.get("ExitStatus") == "success"
    assert _noise(ioc.log()) == []


def test_beacons_go_to_the_repeater_port_as_in_epics_base(make_ioc):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(10)
        port = listener.getsockname()[1]
        ioc = make_ioc(env={"EPICS_CA_REPEATER_PORT": str(port)})
        data, address = listener.recvfrom(1024)
    commands = ca.Broadcaster(ca.CLIENT).recv(data, address)
    assert any(isinstance(c, ca.Beacon) and c.server_port == ioc.port for c in commands)


def test_beacons_nobody_listens_to_are_not_an_error(make_ioc):
    nobody = _free_port()  # no caRepeater there: each beacon is refused (ICMP unreachable)
    ioc = make_ioc(env={"EPICS_CAS_BEACON_PORT": str(nobody)})
    ioc.ca.configure("count", {"detectors": ["det"], "num": 3})
    ioc.ca.put_ok("Start", 1)
    assert _noise(ioc.log()) == []
