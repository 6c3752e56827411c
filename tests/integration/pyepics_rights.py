"""A pyepics client in its own process: prints each access-rights change of some PVs.

Run as ``python pyepics_rights.py PV [PV ...]``; prints ``{"ready": true}`` once connected,
then ``{"pv": ..., "read": ..., "write": ...}`` for every rights message libca passes on, and
stops when its standard input closes. libca names the client by the OS user and
``gethostname()``: run it in a UTS namespace (``unshare -u``) to be another host.
"""

from __future__ import annotations

import json
import sys
import threading

import epics


def main(names: list[str]) -> None:
    lock = threading.Lock()

    def on_access(read_access: bool, write_access: bool, pv: epics.PV | None = None) -> None:
        with lock:
            line = {"pv": pv.pvname if pv else "", "read": read_access, "write": write_access}
            print(json.dumps(line), flush=True)

    pvs = [epics.PV(name, access_callback=on_access) for name in names]
    for pv in pvs:
        if not pv.wait_for_connection(timeout=10):
            print(json.dumps({"error": f"{pv.pvname} did not connect"}), flush=True)
            sys.exit(1)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    for pv in pvs:
        pv.disconnect()


if __name__ == "__main__":
    main(sys.argv[1:])
