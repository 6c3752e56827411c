"""Cost of the live data, measured (never asserted in the test suite).

1. In-process: a 1000-point ``count`` on a bare RunEngine, with and without the LiveData
   callback (its listener stores the update, as the bridge does).
2. Through the IOC: a 1000-point ``count``, watched with camonitor on Data:X and Data:Y1:
   updates received against points taken, and the run's ElapsedTime with and without
   the monitors.

Run: ``.venv/bin/python benchmarks/live_data.py``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def in_process(repeats: int = 7, points: int = 1000) -> None:
    import asyncio

    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import hw

    from runengine_ioc.data.live_data import LiveData

    devices = hw()
    loop = asyncio.new_event_loop()
    RE = RunEngine({}, loop=loop, context_managers=[])
    lock = threading.Lock()
    latest: dict[type, object] = {}

    def listener(item: object) -> None:  # what Bridge.listener does for a coalesced record
        with lock:
            latest[type(item)] = item

    def timed(with_live: bool) -> float:
        token = RE.subscribe(LiveData(listener)) if with_live else None
        started = time.perf_counter()
        RE(bp.count([devices.det], num=points))
        elapsed = time.perf_counter() - started
        if token is not None:
            RE.unsubscribe(token)
        return elapsed

    timed(False)  # warm-up
    bare, live = [], []
    for _ in range(repeats):  # interleaved: the machine is shared, its load drifts
        bare.append(timed(False))
        live.append(timed(True))
    b, v = min(bare), min(live)  # the least disturbed run of each
    print(f"in-process count({points}), best of {repeats}:")
    print(f"  bare RunEngine {b * 1e3:.0f} ms ({b / points * 1e6:.0f} us/point)")
    print(f"  with LiveData  {v * 1e3:.0f} ms ({v / points * 1e6:.0f} us/point)")
    take = latest[next(iter(latest))].take  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(100):
        snapshot = take()
    each = (time.perf_counter() - started) / 100
    print(f"  one snapshot (copy) of {len(snapshot.x)} points: {each * 1e6:.0f} us")
    loop.call_soon_threadsafe(loop.stop)


def through_the_ioc(points: int = 1000) -> None:
    from tests.integration.ca_tools import EPICS_BIN, monitor_values
    from tests.integration.conftest import TEST_PROFILE, IOCProcess, _free_port, loopback_env

    repeater_port = _free_port()
    repeater = subprocess.Popen(
        [str(EPICS_BIN / "caRepeater")],
        env=dict(os.environ, EPICS_CA_REPEATER_PORT=str(repeater_port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = Path(tempfile.mkdtemp(prefix="runengine-bench-"))
    port = _free_port()
    prefix = f"B{uuid.uuid4().hex[:8]}:"
    args = ["--prefix", prefix, "--data-dir", str(work / "data"), "--profile", str(TEST_PROFILE)]
    ioc = IOCProcess(prefix, port, loopback_env(port, repeater_port), work, work / "ioc.log", args)
    try:
        ioc.start()
        ioc.ca.configure("count", {"detectors": ["det"], "num": points})
        quiet = []
        for _ in range(3):
            assert ioc.ca.put("Start", 1).ok
            quiet.append(float(ioc.ca.get("ElapsedTime")))
        watched = []
        updates = []
        for _ in range(3):
            monitor = ioc.ca.monitor("Data:X", "Data:Y1", "Data:NumPoints")
            ioc.ca.wait_for("Data:NumPoints", str(points))
            assert ioc.ca.put("Start", 1).ok
            watched.append(float(ioc.ca.get("ElapsedTime")))
            out = monitor.finish(
                until=lambda o: (
                    monitor_values(o, "NumPoints")[-1:] == [str(points)]
                    and monitor_values(o, "NumPoints").count("0") >= 1
                )
            )
            updates.append(len(monitor_values(out, ":Data:X")))
        print(f"IOC count({points}): ElapsedTime without monitors {quiet} s,")
        print(f"  with camonitor on Data:X, Data:Y1 {watched} s")
        print(f"  Data:X updates received per run: {updates} (for {points} points)")
    finally:
        ioc.stop()
        repeater.terminate()
        repeater.wait(5)


if __name__ == "__main__":
    in_process()
    through_the_ioc()
