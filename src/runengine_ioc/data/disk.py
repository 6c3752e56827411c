"""Whether the data directory can take another run: writable, and above a free-space floor.

A run that starts on a full disk fails part-way (the files sink cannot write its documents),
so the IOC refuses to start one when the directory cannot be written or has less free space
than a floor (``--min-free-mb``). The check is cheap (a ``statvfs`` and an empty file created
and removed), so it runs before every plan is accepted and, for the Disk PVs, once a second.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..engine.events import Refused

#: Free space (MB) below which no run may start, unless ``--min-free-mb`` says otherwise.
DEFAULT_MIN_FREE_MB = 100.0
_MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class DiskState:
    """What the data directory can take.

    Attributes
    ----------
    path
        The data directory.
    free_mb
        Space left to an unprivileged writer, in MB (NaN when it cannot be read).
    min_free_mb
        The floor below which runs are refused.
    problem
        Why a run may not start, in words; ``""`` when one may.
    """

    path: Path
    free_mb: float
    min_free_mb: float
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        """One line for Disk:Status."""
        if self.problem:
            return self.problem
        return f"ok: {self.free_mb:.0f} MB free in {self.path} (floor {self.min_free_mb:g} MB)"


def _probe_write(path: Path) -> str:
    """Create and remove an empty file: the only test of writability that root cannot pass
    by privilege (``os.access`` says yes to root on a mode-0555 directory)."""
    try:
        # a name of its own for each probe: the periodic check and a Start's pre-flight check
        # may run at once, and one must not remove the other's probe
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return ""


def disk_state(path: str | os.PathLike[str], min_free_mb: float) -> DiskState:
    """Check the data directory now (a few system calls; no file is left behind)."""
    where = Path(path)
    try:
        stats = os.statvfs(where)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return DiskState(where, math.nan, min_free_mb, f"data directory {where}: {reason}")
    free_mb = stats.f_bavail * stats.f_frsize / _MB
    failure = _probe_write(where)
    if failure:
        problem = f"data directory {where} is not writable ({failure})"
    elif free_mb < min_free_mb:
        problem = (
            f"data directory {where} has {free_mb:.1f} MB free, "
            f"below the {min_free_mb:g} MB floor (--min-free-mb)"
        )
    else:
        problem = ""
    return DiskState(where, free_mb, min_free_mb, problem)


def refuse_unless_room(state: DiskState) -> None:
    """Raise :class:`Refused` (nothing started) when the state says no run may start."""
    if state.problem:
        raise Refused(f"no run started: {state.problem}")
