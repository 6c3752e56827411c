"""Fixtures that start the IOC as a subprocess and drive it with the EPICS base tools.

Every IOC gets a random PV prefix and its own CA server port; clients and servers use
loopback only. Readiness is awaited by polling a PV, never by sleeping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port as _free_port

from .ca_tools import EPICS_BIN, ServerProcess
from .hardware import SoftIocProcess, hardware_env

TEST_PROFILE = Path(__file__).with_name("profile_for_tests.py")


@pytest.fixture(scope="session")
def repeater_port() -> Iterator[int]:
    """Our own caRepeater, so that libca does not spawn one holding our pipes open."""
    port = _free_port()
    env = dict(os.environ, EPICS_CA_REPEATER_PORT=str(port))
    proc = subprocess.Popen(
        [str(EPICS_BIN / "caRepeater")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield port
    proc.terminate()
    proc.wait(5)


class IOCProcess(ServerProcess):
    """One runengine-ioc subprocess with its prefix, port, data directory and CA tools."""

    name = "IOC"

    def __init__(
        self,
        prefix: str,
        port: int,
        env: dict[str, str],
        data_dir: Path,
        log_path: Path,
        args: list[str],
    ) -> None:
        super().__init__(prefix, port, env, log_path)
        self.data_dir = data_dir
        self.args = args

    def command(self) -> list[str]:
        return [sys.executable, "-m", "runengine_ioc.cli", *self.args]

    def runs(self) -> list[Path]:
        return sorted(self.data_dir.glob("*.jsonl"))


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
        PYTHONUNBUFFERED="1",
    )
    return env


#: Start-ups tried, each on a new free port, when the port was taken before the IOC bound it.
PORT_ATTEMPTS = 3


@pytest.fixture
def make_ioc(tmp_path: Path, repeater_port: int) -> Iterator:
    """Factory: start an IOC with extra CLI flags; all are stopped (by PID) at teardown."""
    started: list[IOCProcess] = []

    def make(
        *extra: str,
        profile: str | None = str(TEST_PROFILE),
        data_dir: Path | None = None,
        prefix: str | None = None,
        hardware: SoftIocProcess | None = None,
        env: dict[str, str] | None = None,
    ) -> IOCProcess:
        """``hardware``: a softIoc the IOC (and its CaTools) reach too, on its own port."""
        prefix = prefix or f"T{uuid.uuid4().hex[:8]}:"
        data = data_dir or tmp_path / f"data-{len(started)}"
        args = ["--prefix", prefix, "--data-dir", str(data), *extra]
        if profile:
            args += ["--profile", profile]
        for attempt in range(PORT_ATTEMPTS):
            port = _free_port()
            ioc_env = loopback_env(port, repeater_port)
            if hardware is not None:
                ioc_env = hardware_env(ioc_env, port, hardware.port)
                ioc_env["RUNENGINE_BEAMLINE_PREFIX"] = hardware.prefix
            ioc_env.update(env or {})
            ioc = IOCProcess(
                prefix,
                port,
                ioc_env,
                data,
                tmp_path / f"ioc-{len(started)}.log",
                args,
            )
            started.append(ioc)
            try:
                ioc.start()
                return ioc
            except RuntimeError as exc:
                # the free port was taken between our look and the IOC's bind (another
                # test's client): only that is tried again, on another port
                if "Address already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    yield make
    for ioc in started:
        ioc.stop()


@pytest.fixture
def ioc(make_ioc) -> IOCProcess:  # type: ignore[no-untyped-def]
    """The IOC on the test profile (simulated devices plus test plans)."""
    return make_ioc()


@pytest.fixture
def make_beamline(tmp_path: Path, repeater_port: int) -> Iterator:
    """Factory: the simulated beamline's softIoc on its own port; stopped (by PID) at teardown."""
    started: list[SoftIocProcess] = []

    def make(port: int | None = None, prefix: str | None = None) -> SoftIocProcess:
        port = port or _free_port()
        hw = SoftIocProcess(
            prefix or f"H{uuid.uuid4().hex[:8]}:",
            port,
            loopback_env(port, repeater_port),
            tmp_path / f"softioc-{len(started)}.log",
        )
        started.append(hw)
        hw.start()
        return hw

    yield make
    for hw in started:
        hw.stop()


@pytest.fixture
def beamline(make_beamline) -> SoftIocProcess:  # type: ignore[no-untyped-def]
    return make_beamline()
