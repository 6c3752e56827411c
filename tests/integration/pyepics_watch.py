"""A pyepics client in its own process: prints every monitor update of some PVs as JSON lines.

Run as ``python pyepics_watch.py PV [PV ...]``; it prints ``{"ready": true}`` once connected
and stops when its standard input closes.
"""

from __future__ import annotations

import json
import sys
import threading

import epics


def main(names: list[str]) -> None:
    lock = threading.Lock()

    def on_update(
        pvname: str = "", value: object = None, char_value: str = "", **kw: object
    ) -> None:
        with lock:
            print(json.dumps({"pv": pvname, "value": char_value}), flush=True)

    pvs = [epics.PV(name, form="ctrl", callback=on_update, auto_monitor=True) for name in names]
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
