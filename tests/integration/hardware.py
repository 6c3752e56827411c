"""The simulated beamline's softIoc as a test subprocess: start, kill, restart, by PID."""

from __future__ import annotations

import sys
from pathlib import Path

from .ca_tools import ServerProcess


class SoftIocProcess(ServerProcess):
    """``python -m runengine_ioc.sim.beamline`` (which execs softIoc) on its own port."""

    name = "softIoc"
    ready_suffix = "BeamCurrent"
    stop_timeout = 10.0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "runengine_ioc.sim.beamline",
            "--prefix",
            self.prefix,
            "--port",
            str(self.port),
        ]


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
