"""pyepics operations in their own process (libca reads its addresses once, at start).

Run as ``python pyepics_ops.py '<json list of operations>'``; prints one JSON list of results.
Operations: ``{"op": "ctrl", "pv": ...}`` (value, type, count and ``get_ctrlvars()``),
``{"op": "get", "pv": ..., "as_string": bool}``, ``{"op": "put", "pv": ..., "value": ...}``
(``wait=True``: the put-callback; the result is ``ok`` or the error's text).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    """JSON-able: numpy to lists, NaN to the string "nan", bytes to text."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def run(op: dict[str, Any]) -> Any:
    import epics

    pv = epics.get_pv(op["pv"], form="ctrl", connect=True, timeout=5)
    if not pv.connected:
        return {"error": "not connected"}
    if op["op"] == "ctrl":
        ctrl = pv.get_ctrlvars(timeout=5) or {}
        for key in ("timestamp", "posixseconds", "nanoseconds"):
            ctrl.pop(key, None)
        return {
            "value": pv.get(timeout=5),
            "type": pv.type,
            "count": pv.count,
            "nelm": pv.nelm,
            **ctrl,
        }
    if op["op"] == "get":
        return pv.get(as_string=op.get("as_string", False), timeout=5)
    if op["op"] == "put":
        try:
            done = pv.put(op["value"], wait=True, timeout=10)
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return "ok" if done == 1 else f"failed: {done}"
    raise ValueError(op)


def main(operations: list[dict[str, Any]]) -> None:
    import epics

    print(json.dumps([_plain(run(op)) for op in operations]), flush=True)
    epics.ca.finalize_libca()


def pyepics(env: dict[str, str], operations: list[dict[str, Any]]) -> list[Any]:
    """Run ``operations`` with pyepics in a subprocess with ``env``; their results."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__)), json.dumps(operations)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results: list[Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
