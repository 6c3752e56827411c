"""A Channel Access client in its own process (pyepics) that drives the IOC and times it.

``python -m benchmarks.client PREFIX`` reads one JSON command per line on stdin and answers
one JSON line on stdout. Times are this process's ``time.time()`` taken before a put and in the
monitor callback (libca's thread), so the put, the State update and the files watched are all
timed on one clock, and no process start-up is included.

Commands
--------
``{"op": "configure", "plan": "count", "args": {...}}``
    PlanName and PlanArgs, put with completion.
``{"op": "put", "pv": "Pause", "state": "paused", "file": null|"start"|"stop", "dir": D}``
    Put 1 (no wait), then report seconds until State showed ``state`` and, if asked, until a
    new run file appeared with its start document (``start``) or the newest file ended with
    its stop document (``stop``).
``{"op": "run"}``
    Put Start with completion (returns when the plan has ended); reports the wall time.
``{"op": "run_many", "n": 1000}``
    As ``run``, n times.
``{"op": "states"}``
    Every State value this client has seen, with times.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import epics

from tests.polling import poll


class Driver:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cond = threading.Condition()
        self.states: list[tuple[float, str]] = []
        self._enum: list[str] = []
        self.pvs = {
            name: epics.PV(prefix + name)
            for name in ("Start", "Pause", "Resume", "Abort", "Stop", "PlanName", "PlanArgs")
        }
        self.state_pv = epics.PV(prefix + "State", form="ctrl", auto_monitor=True)
        for pv in [*self.pvs.values(), self.state_pv]:
            if not pv.wait_for_connection(timeout=10):
                raise RuntimeError(f"{pv.pvname} did not connect")
        self._enum = list(self.state_pv.enum_strs or [])
        self.state_pv.add_callback(self._on_state)
        self.state_pv.get()

    def _on_state(self, value: Any = None, **_: Any) -> None:
        now = time.time()
        try:
            text = self._enum[int(value)]
        except (IndexError, TypeError, ValueError):
            text = str(value)
        with self._cond:
            self.states.append((now, text))
            self._cond.notify_all()

    def _state_time(self, target: str, after: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, value in self.states:
                    if t >= after and value == target:
                        return t
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def configure(self, plan: str, args: dict[str, Any]) -> dict[str, Any]:
        self.pvs["PlanName"].put(plan, wait=True, timeout=10)
        self.pvs["PlanArgs"].put(json.dumps(args), wait=True, timeout=10)
        return {"ok": True}

    def put(
        self, pv: str, state: str, file: str | None, directory: str | None, timeout: float
    ) -> dict[str, Any]:
        data_dir = Path(directory) if directory else None
        before = set(os.listdir(data_dir)) if data_dir is not None else set()
        newest = max((n for n in before if _is_run(n)), default=None)
        t0 = time.time()
        self.pvs[pv].put(1, wait=False)
        file_t = None
        if file == "start" and data_dir is not None:
            file_t = _wait_new_run(data_dir, before, timeout)
        elif file == "stop" and data_dir is not None and newest is not None:
            file_t = _wait_stop(data_dir / newest, timeout)
        state_t = self._state_time(state, t0, timeout)
        return {
            "state": None if state_t is None else state_t - t0,
            "file": None if file_t is None else file_t - t0,
        }

    def run(self, timeout: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.pvs["Start"].put(1, wait=True, timeout=timeout)
        return {"wall": time.perf_counter() - t0}

    def run_many(self, n: int, timeout: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        for _ in range(n):
            self.pvs["Start"].put(1, wait=True, timeout=timeout)
        return {"wall": time.perf_counter() - t0}


def _is_run(name: str) -> bool:
    return name.startswith("scan") and name.endswith(".jsonl")


def _wait_new_run(data_dir: Path, before: set[str], timeout: float) -> float | None:
    """Time at which a new run file holds its first (start) line."""

    def started() -> float | None:
        for name in os.listdir(data_dir):
            if _is_run(name) and name not in before:
                with open(data_dir / name, "rb") as f:
                    if f.readline().endswith(b"\n"):
                        return time.time()
        return None

    return poll(started, timeout, interval=0.001)


def _wait_stop(path: Path, timeout: float) -> float | None:
    """Time at which a run file ends with its stop document."""

    def stopped() -> float | None:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read()
        lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
        if tail.endswith(b"\n") and lines[-1].startswith(b'{"name": "stop"'):
            return time.time()
        return None

    return poll(stopped, timeout, interval=0.001)


def main(prefix: str) -> None:
    driver = Driver(prefix)
    replies = sys.stdout
    sys.stdout = sys.stderr  # bluesky prints (e.g. on abort); the replies channel stays clean
    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        op = command["op"]
        timeout = float(command.get("timeout", 600))
        try:
            if op == "configure":
                reply = driver.configure(command["plan"], command["args"])
            elif op == "put":
                reply = driver.put(
                    command["pv"], command["state"], command.get("file"), command.get("dir"), 10
                )
            elif op == "run":
                reply = driver.run(timeout)
            elif op == "run_many":
                reply = driver.run_many(int(command["n"]), timeout)
            elif op == "states":
                reply = {"states": driver.states}
            else:
                reply = {"error": f"unknown op {op}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
