"""Test profile: the simulated beamline, an axis that never arrives, a plan whose cleanup moves it.

A Stop or Abort of ``stuck_cleanup`` leaves the RunEngine ``stopping``/``aborting`` for good:
what a Halt must end within ``--halt-timeout`` (tests/integration/test_interrupt_races.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Movable, Readable
from ophyd.positioner import SoftPositioner
from ophyd.status import Status

from runengine_ioc import DEFAULT_PLANS, Profile
from runengine_ioc.sim.profiles.sim import build_profile as build_sim_profile


class NeverArrives(SoftPositioner):
    """An axis that takes every move and never arrives (stop() does nothing): a hung cleanup."""

    def move(self, position: float, wait: bool = False, **kwargs: Any) -> Status:
        if not hasattr(self, "_never"):  # the initial position, set while constructing
            self._never: list[Status] = []
            return super().move(position, wait=wait, **kwargs)
        status = Status(obj=self)
        self._never.append(status)  # kept, never finished
        return status

    def stop(self, *, success: bool = False) -> None:
        pass


def stuck_cleanup(detectors: Sequence[Readable], axis: Movable, num: int = 100):  # type: ignore[no-untyped-def]
    """Read slowly in a run whose cleanup (after a Stop or Abort) moves a stuck axis home."""

    def points():  # type: ignore[no-untyped-def]
        for _ in range(num):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read(detectors)
            yield from bps.sleep(0.05)

    @bpp.run_decorator(md={"plan_name": "stuck_cleanup", "num_points": num})
    def inner():  # type: ignore[no-untyped-def]
        return (yield from bpp.finalize_wrapper(points(), bps.mv(axis, 0.0)))

    return (yield from inner())


def build_profile() -> Profile:
    devices = dict(build_sim_profile().devices)  # type: ignore[arg-type]
    devices["stuck"] = NeverArrives(name="stuck", init_pos=0.0)
    return Profile(devices=devices, plans=[*DEFAULT_PLANS, stuck_cleanup])
