"""The first hour: `runengine-ioc --help` says what a newcomer needs, the prefix's default too."""

from __future__ import annotations

import subprocess
import sys


def test_help_shows_the_prefix_and_its_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runengine_ioc.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--prefix PREFIX" in result.stdout
    assert "(default: RE:)" in " ".join(result.stdout.split())
