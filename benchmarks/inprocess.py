"""The baseline: the same plan on a plain RunEngine in its own process, same callbacks.

``python -m benchmarks.inprocess DATA_DIR`` builds what the IOC builds for a run — ophyd's
simulated devices (the embedded sim profile), ``runengine_ioc.plans.count``, the local files
sink and the persistent scan id — but no worker thread, bridge or Channel Access. It reads one
JSON command per line on stdin and answers one JSON line:

``{"op": "count", "num": N}``
    ``{"wall": s, "doc": s}``: the RunEngine call, and stop-minus-start document times.
``{"op": "pause"}``
    Start a long count on a thread, request an immediate pause from this one and report the
    seconds until the RunEngine's state hook said ``paused``; then abort it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from runengine_ioc.data.files import LocalFilesSink, PersistentScanId
from runengine_ioc.engine.profile import load_profile
from runengine_ioc.plans import count

from .procs import run_times


class Baseline:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        profile = load_profile()
        devices = profile.devices
        assert isinstance(devices, dict)
        self.det = devices["det"]
        self.RE = RunEngine(
            dict(profile.metadata),
            context_managers=[],
            call_returns_result=True,
            scan_id_source=PersistentScanId(data_dir),
        )
        self.files = LocalFilesSink(data_dir)
        self.RE.subscribe(self.files)
        self._states: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self.RE.state_hook = self._on_state  # type: ignore[assignment]

    def _on_state(self, new: str, old: str) -> None:
        with self._cond:
            self._states.append((time.perf_counter(), str(new)))
            self._cond.notify_all()

    def count(self, num: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.RE(count([self.det], num=num))
        wall = time.perf_counter() - t0
        assert self.files.last_file is not None
        start, stop, events = run_times(self.files.last_file)
        return {"wall": wall, "doc": stop - start, "events": events}

    def _wait_state(self, target: str, after: float, timeout: float = 10.0) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, state in self._states:
                    if t >= after and state == target:
                        return t
                if time.monotonic() > deadline:
                    return None
                self._cond.wait(0.1)

    def pause(self) -> dict[str, Any]:
        def run() -> None:
            with contextlib.suppress(RunEngineInterrupted):
                self.RE(count([self.det], num=10**7))

        thread = threading.Thread(target=run, daemon=True)
        t_start = time.perf_counter()
        thread.start()
        self._wait_state("running", t_start)
        time.sleep(0.2)
        t0 = time.perf_counter()
        self.RE.request_pause()
        t_paused = self._wait_state("paused", t0)
        thread.join(10)
        self.RE.abort("benchmark")
        return {"pause": None if t_paused is None else t_paused - t0}


def main(data_dir: str) -> None:
    baseline = Baseline(Path(data_dir))
    replies = sys.stdout
    sys.stdout = sys.stderr  # bluesky prints (e.g. on abort); the replies channel stays clean
    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            if command["op"] == "count":
                reply = baseline.count(int(command["num"]))
            elif command["op"] == "pause":
                reply = baseline.pause()
            else:
                reply = {"error": f"unknown op {command['op']}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
