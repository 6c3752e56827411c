"""Test profile: the simulated beamline plus plans and devices that misbehave on purpose."""

from __future__ import annotations

import os
from collections.abc import Sequence

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Readable
from ophyd import Component, Device, Signal

from runengine_ioc import DEFAULT_PLANS, Profile
from runengine_ioc.sim.profiles.sim import build_profile as build_sim_profile


class StageProbe(Device):
    """Records stage/unstage in a file named by RE_IOC_STAGE_LOG, so tests can see cleanup."""

    value = Component(Signal, value=1.0, kind="hinted")

    def _log(self, what: str) -> None:
        path = os.environ.get("RE_IOC_STAGE_LOG")
        if path:
            with open(path, "a") as file:
                file.write(f"{what}\n")

    def stage(self):  # type: ignore[no-untyped-def]
        self._log("stage")
        return super().stage()

    def unstage(self):  # type: ignore[no-untyped-def]
        self._log("unstage")
        return super().unstage()


def fail_after(detectors: Sequence[Readable], points: int = 2, message: str = "simulated failure"):  # type: ignore[no-untyped-def]
    """Take some points, then raise RuntimeError(message), to test failure handling."""

    @bpp.stage_decorator(detectors)
    @bpp.run_decorator(md={"plan_name": "fail_after"})
    def inner():  # type: ignore[no-untyped-def]
        for _ in range(points):
            yield from bps.trigger_and_read(detectors)
        raise RuntimeError(message)

    return (yield from inner())


def build_profile() -> Profile:
    profile = build_sim_profile()
    devices = dict(profile.devices)  # type: ignore[arg-type]
    devices["probe"] = StageProbe(name="probe")
    return Profile(
        devices=devices,
        plans=[*DEFAULT_PLANS, fail_after],
        metadata={"profile": "tests"},
    )
