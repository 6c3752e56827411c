"""Test profile: the shipped softIoc beamline plus its stuck axis (a move that never ends)."""

from __future__ import annotations

import os

from runengine_ioc import Profile
from runengine_ioc.sim.profiles.softioc_beamline import (
    DEFAULT_PREFIX,
    PREFIX_ENV,
    PVPositionerPC,
    motor,
)
from runengine_ioc.sim.profiles.softioc_beamline import build_profile as build_beamline_profile


def build_profile() -> Profile:
    profile = build_beamline_profile()
    prefix = os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)
    stuck: PVPositionerPC = motor(prefix, "stuck", timeout=None)  # waits for ever
    devices = [*profile.devices, stuck]  # type: ignore[misc]
    return Profile(
        devices=devices,
        plans=profile.plans,
        suspenders=profile.suspenders,
        metadata={**profile.metadata, "profile": "beamline-tests"},
    )
