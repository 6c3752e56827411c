"""A small tmpfs for tests of a full (or read-only) disk: mounted on a temp dir, unmounted after.

Mounting needs root (the test machines run as root); where ``mount`` is refused the test is
skipped with the reason. ``fill`` leaves a chosen amount of space free with a filler file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MB = 1024 * 1024


@contextmanager
def small_tmpfs(path: Path, size_kb: int = 2048) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` kB mounted on ``path`` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small file system to fill")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, mode: str) -> None:
    """Remount a tmpfs of ours ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path, leave: int, name: str = "filler.bin") -> Path:
    """Grow a filler file in ``path`` until only about ``leave`` bytes are free."""
    filler = path / name
    with open(filler, "ab") as file:
        while (room := free_bytes(path) - leave) > 0:
            file.write(b"\0" * min(room, MB))
            file.flush()
            os.fsync(file.fileno())
    return filler
