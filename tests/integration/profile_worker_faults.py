"""Test profile: plans and a loader that end, freeze or bloat the process they run in.

The IOC runs its profile in a worker process; these faults must cost a worker restart (or a
refused Reload), never the IOC. ``RE_IOC_PROFILE_MODE`` names a file whose content decides how
the *next* load of this profile behaves: ``exit`` (``sys.exit(3)``), ``hang`` (never returns),
``raise``, ``sink`` (with a profile callback that drops every document), anything else loads
normally. ``RE_IOC_PROFILE_PIDS`` names a file each load appends
its process id to, so a test can tell the worker's process from the IOC's.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Readable

from runengine_ioc import DEFAULT_PLANS, Profile
from runengine_ioc.sim.profiles.sim import build_profile as build_sim_profile


def freeze_worker(detectors: Sequence[Readable]):  # type: ignore[no-untyped-def]
    """Take a point, then stop this whole process (SIGSTOP), as a wedged library would."""

    @bpp.stage_decorator(detectors)
    @bpp.run_decorator()
    def inner():  # type: ignore[no-untyped-def]
        yield from bps.trigger_and_read(list(detectors))
        os.kill(os.getpid(), signal.SIGSTOP)
        # the other threads run on until the stop reaches them: never to the run's end
        time.sleep(3600)
        yield from bps.trigger_and_read(list(detectors))

    return (yield from inner())


def eat_memory(detectors: Sequence[Readable], mb_per_point: int = 50, points: int = 1000):  # type: ignore[no-untyped-def]
    """Keep ``mb_per_point`` MB more at each point: a runaway plan."""
    kept: list[bytearray] = []

    @bpp.stage_decorator(detectors)
    @bpp.run_decorator()
    def inner():  # type: ignore[no-untyped-def]
        for _ in range(points):
            kept.append(bytearray(mb_per_point * 1_000_000))  # zero-filled: pages touched
            for index in range(0, len(kept[-1]), 4096):
                kept[-1][index] = 1
            yield from bps.trigger_and_read(list(detectors))
            yield from bps.sleep(0.02)

    return (yield from inner())


def dropping_sink(name: str, doc: dict) -> None:
    """A profile callback that fails on every document (its guard counts them as dropped)."""
    raise RuntimeError("this sink drops everything")


def _mode() -> str:
    path = os.environ.get("RE_IOC_PROFILE_MODE")
    return Path(path).read_text().strip() if path and Path(path).exists() else ""


def build_profile() -> Profile:
    pids = os.environ.get("RE_IOC_PROFILE_PIDS")
    if pids:
        with open(pids, "a") as file:
            file.write(f"{os.getpid()}\n")
    mode = _mode()
    if mode == "exit":
        sys.exit(3)
    if mode == "hang":
        threading.Event().wait()
    if mode == "raise":
        raise RuntimeError("the profile broke on purpose")
    profile = build_sim_profile()
    return Profile(
        devices=profile.devices,
        plans=[*DEFAULT_PLANS, freeze_worker, eat_memory],
        callbacks=[dropping_sink] if mode == "sink" else [],
        metadata={"beamline_id": "test"},
    )
