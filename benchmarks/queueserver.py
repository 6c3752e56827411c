"""bluesky-queueserver side by side: redis and the RE Manager, driven by REManagerAPI (0MQ).

The manager loads ``queueserver/startup/`` (the IOC's sim devices, the same ``count`` plan and
the same local files sink, into ``$RUNENGINE_BENCH_QS_DATA``), so its runs are timed from the
same documents as ours. A client sees the RunEngine's state through ``status()``; we poll it
every ``POLL_S`` seconds (its own ``wait_for_*`` helpers poll too), so each latency carries up
to ``POLL_S`` of polling granularity.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI

from tests.polling import poll

from .procs import QS_DIR, Processes, free_port, latest_run, redis_server_binary, run_times

POLL_S = 0.005


class QueueServer:
    def __init__(self, procs: Processes, workdir: Path, name: str) -> None:
        self.procs = procs
        self.workdir = workdir / f"qs-{name}"
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.control_port = free_port()
        self.info_port = free_port()
        self.redis: subprocess.Popen[Any] | None = None
        self.manager: subprocess.Popen[Any] | None = None
        self.api: REManagerAPI | None = None

    def start(self, timeout: float = 120.0) -> dict[str, float]:
        """Start redis and the manager, open the environment; the seconds each step took."""
        self.redis = self.procs.popen(
            [
                redis_server_binary(),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        )
        env = dict(
            __import__("os").environ,
            RUNENGINE_BENCH_QS_DATA=str(self.data_dir),
            PYTHONUNBUFFERED="1",
        )
        log = open(self.workdir / "manager.log", "ab")  # noqa: SIM115 - the child owns it
        t0 = time.perf_counter()
        self.manager = self.procs.popen(
            [
                str(Path(sys.executable).parent / "start-re-manager"),
                "--startup-dir",
                str(QS_DIR / "startup"),
                "--existing-plans-devices",
                str(QS_DIR / "existing_plans_and_devices.yaml"),
                "--user-group-permissions",
                str(QS_DIR / "user_group_permissions.yaml"),
                "--update-existing-plans-devices",
                "NEVER",
                "--redis-addr",
                f"127.0.0.1:{self.redis_port}",
                "--zmq-control-addr",
                f"tcp://127.0.0.1:{self.control_port}",
                "--zmq-info-addr",
                f"tcp://127.0.0.1:{self.info_port}",
                "--zmq-publish-console",
                "OFF",
                "--use-ipython-kernel",
                "OFF",
                "--keep-re",
                "--console-output",
                "OFF",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.api = REManagerAPI(
            zmq_control_addr=f"tcp://127.0.0.1:{self.control_port}",
            timeout_recv=2.0,
            timeout_send=2.0,
        )
        deadline = t0 + timeout
        while True:
            if self.manager.poll() is not None:
                raise RuntimeError("RE Manager exited at start-up; see " + str(self.workdir))
            try:
                self.api.status(reload=True)
                break
            except Exception:
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.02)
        t_manager = time.perf_counter() - t0
        self.api.environment_open()
        self.api.wait_for_idle(timeout=timeout)
        status = self.api.status(reload=True)
        if not status["worker_environment_exists"]:
            raise RuntimeError(f"RE Manager environment did not open: {status}")
        return {"manager": t_manager, "environment": time.perf_counter() - t0}

    # --------------------------------------------------------------- helpers
    @property
    def rm(self) -> REManagerAPI:
        assert self.api is not None
        return self.api

    def pids(self) -> list[int]:
        assert self.manager is not None
        try:
            proc = psutil.Process(self.manager.pid)
            return [proc.pid, *(c.pid for c in proc.children(recursive=True))]
        except psutil.Error:
            return []

    def redis_pid(self) -> int:
        assert self.redis is not None
        return self.redis.pid

    def _wait(self, predicate: Any, timeout: float = 60.0) -> float | None:
        """perf_counter time at which status() first satisfied predicate."""
        return poll(
            lambda: time.perf_counter() if predicate(self.rm.status(reload=True)) else None,
            timeout,
            interval=POLL_S,
        )

    def _submit_start(self, num: int) -> float:
        t0 = time.perf_counter()
        self.rm.item_add(BPlan("count", ["det"], num=num))
        self.rm.queue_start()
        return t0

    # -------------------------------------------------------------- measures
    def count(self, num: int) -> dict[str, Any]:
        """Submit+start count(num); time until it is in the history, and from its documents."""
        before = {p.name for p in self.data_dir.glob("scan*.jsonl")}
        status = self.rm.status(reload=True)
        if status["items_in_queue"]:
            self.rm.queue_clear()
        done = status["items_in_history"]
        t0 = self._submit_start(num)
        t_end = self._wait(
            lambda s: s["items_in_history"] > done and s["manager_state"] == "idle", timeout=600
        )
        result: dict[str, Any] = {"wall": None if t_end is None else t_end - t0}
        start, stop, events = run_times(latest_run(self.data_dir, before))
        result.update(doc=stop - start, events=events)
        return result

    def control_cycle(self, settle: float) -> dict[str, Any]:
        """Start a long count; pause, resume; pause and abort (it aborts paused plans only)."""
        out: dict[str, Any] = {}
        t0 = self._submit_start(10**7)
        t = self._wait(lambda s: s["re_state"] == "running")
        out["start_running"] = None if t is None else t - t0
        time.sleep(settle)
        t0 = time.perf_counter()
        self.rm.re_pause(option="immediate")
        t = self._wait(lambda s: s["re_state"] == "paused")
        out["pause_paused"] = None if t is None else t - t0
        time.sleep(settle / 2)
        t0 = time.perf_counter()
        self.rm.re_resume()
        t = self._wait(lambda s: s["re_state"] == "running")
        out["resume_running"] = None if t is None else t - t0
        time.sleep(settle)
        self.rm.re_pause(option="immediate")
        # the manager refuses re_abort until it, too, says paused (re_state can say so first)
        self._wait(lambda s: s["re_state"] == "paused" and s["manager_state"] == "paused")
        t0 = time.perf_counter()
        self.rm.re_abort()
        t = self._wait(lambda s: s["manager_state"] == "idle" and s["re_state"] == "idle")
        out["abort_idle"] = None if t is None else t - t0
        self.rm.queue_clear()  # an aborted item goes back to the front of the queue
        return out

    def run_queue(self, items: int, timeout: float = 3600.0) -> dict[str, Any]:
        """Queue ``items`` count(det, num=1), start the queue, wait until all are in history."""
        status = self.rm.status(reload=True)
        if status["items_in_queue"]:
            self.rm.queue_clear()
        done = status["items_in_history"]
        t0 = time.perf_counter()
        self.rm.item_add_batch([BPlan("count", ["det"], num=1) for _ in range(items)])
        adding = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.rm.queue_start()
        t_end = poll(
            lambda: (
                time.perf_counter()
                if (s := self.rm.status(reload=True))["items_in_history"] >= done + items
                and s["manager_state"] == "idle"
                else None
            ),
            timeout,
            interval=0.05,
        )
        return {"add_s": adding, "queue_s": None if t_end is None else t_end - t0}

    def stop(self) -> None:
        if self.api is not None:
            try:
                self.api.environment_close()
                self.api.wait_for_idle(timeout=30)
            except Exception:
                pass
            self.api.close()
            self.api = None
        children = self.pids()
        if self.manager is not None:
            self.procs.end(self.manager)
        for pid in children[1:]:  # the manager's own children, should any outlive it
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).terminate()
        if self.redis is not None:
            self.procs.end(self.redis)
