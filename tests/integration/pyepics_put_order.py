"""pyepics in its own process: does a put's completion come after the monitors it caused?

Run as ``python pyepics_put_order.py '<json>'`` with ``{"puts": [{"pv": name, "values": [...]},
...], "start": {"pv": Start, "tries": n, "watch": {"ExitStatus": pv, ...}}}``; prints one JSON
object: for each put PV the tries whose subscription still held an old value right after
``caput(wait=True)`` returned, and the same for the PVs a Start's completion must have moved.
This is how PyDM and ophyd read: from the subscription, not with a fresh get.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _text(pv: Any) -> str:
    value = pv.get(as_string=True, use_monitor=True)
    return str(value)


def check_puts(spec: dict[str, Any]) -> list[str]:
    import epics

    pv = epics.get_pv(spec["pv"], auto_monitor=True, connect=True, timeout=5)
    stale = []
    for value in spec["values"]:
        epics.caput(spec["pv"], value, wait=True, timeout=10)
        seen = _text(pv)
        if seen != str(value):
            stale.append(f"put {value!r}, subscription held {seen!r}")
    return stale


def check_start(spec: dict[str, Any]) -> list[str]:
    """After Start's put-callback: ExitStatus set, State idle, Start 0, new ScanId/RunUid."""
    import epics

    watch = {
        key: epics.get_pv(name, auto_monitor=True, connect=True, timeout=5)
        for key, name in spec["watch"].items()
    }
    stale = []
    for attempt in range(spec["tries"]):
        before = {key: _text(pv) for key, pv in watch.items()}
        epics.caput(spec["pv"], 1, wait=True, timeout=30)
        after = {key: _text(pv) for key, pv in watch.items()}
        wrong = [
            f"{key}={after[key]!r}"
            for key, good in (
                ("ExitStatus", after["ExitStatus"] == "success"),
                ("State", after["State"] == "idle"),
                ("Start", after["Start"] in ("0", "Done")),
                ("ScanId", after["ScanId"] != before["ScanId"]),
                ("RunUid", after["RunUid"] != before["RunUid"]),
            )
            if not good
        ]
        if wrong:
            stale.append(f"try {attempt}: " + ", ".join(wrong))
    return stale


def main(spec: dict[str, Any]) -> None:
    result = {item["pv"]: check_puts(item) for item in spec.get("puts", [])}
    if "start" in spec:
        result["start"] = check_start(spec["start"])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))


def put_order(env: dict[str, str], spec: dict[str, Any]) -> dict[str, list[str]]:
    """Run the checks of ``spec`` with pyepics in a subprocess with ``env``; what was stale."""
    import subprocess
    from pathlib import Path

    proc = subprocess.run(
        [sys.executable, str(Path(__file__)), json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
