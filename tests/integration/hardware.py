"""The simulated beamline's softIoc as a test subprocess: start, kill, restart, by PID."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from .ca_tools import CaTools


class SoftIocProcess:
    """``python -m runengine_ioc.beamline`` (which execs softIoc) on its own port."""

    def __init__(self, prefix: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.prefix = prefix
        self.port = port
        self.env = env
        self.log_path = log_path
        self.ca = CaTools(env, prefix)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runengine_ioc.beamline",
                "--prefix",
                self.prefix,
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"softIoc exited at start-up:\n{self.log()}")
            if self.ca.try_get("BeamCurrent", timeout=0.5) is not None:
                return
        raise TimeoutError(f"softIoc did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log_file.close()

    def stop(self) -> None:
        self.ca.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log_file", None) and not self.log_file.closed:
            self.log_file.close()


def hardware_env(base: dict[str, str], *ports: int) -> dict[str, str]:
    """A client environment that finds every listed loopback server (each on its own port)."""
    env = dict(base)
    env["EPICS_CA_ADDR_LIST"] = " ".join(f"127.0.0.1:{port}" for port in ports)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def process_figures(pid: int) -> dict[str, int]:
    """RSS (kB) and thread count of a process, from /proc."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            figures["rss_kb"] = int(value.split()[0])
        elif key == "Threads":
            figures["threads"] = int(value.strip())
    return figures
