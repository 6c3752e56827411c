"""The simulated beamline on real EPICS: ophyd devices on the softIoc of ``runengine-beamline``.

Devices: ``m1``, ``m2`` (positioners completing on put-callback, with readback and done-moving
PVs), ``det1``, ``det2`` (detectors peaking on the motor positions), ``beam_current``; a
``SuspendFloor`` on the beam current suspends a running plan below 50 mA and resumes it
above 90 mA.

Configured from the environment when the profile is built (start-up and Reload):

``RUNENGINE_BEAMLINE_PREFIX``
    PV prefix of the beamline IOC (default ``SIM:BL:``, as ``runengine-beamline``).
``RUNENGINE_BEAMLINE_RESUME_SLEEP``
    seconds the beam must stay back before a suspended plan resumes (default 5).
"""

from __future__ import annotations

import os
from typing import Any

from bluesky.suspenders import SuspendFloor
from ophyd import Component, EpicsSignal, EpicsSignalRO, PVPositionerPC

from runengine_ioc import DEFAULT_PLANS, Profile

PREFIX_ENV = "RUNENGINE_BEAMLINE_PREFIX"
RESUME_SLEEP_ENV = "RUNENGINE_BEAMLINE_RESUME_SLEEP"
DEFAULT_PREFIX = "SIM:BL:"

#: Seconds to wait for a PV to connect, and for a read or a plain put to be answered.
CONNECTION_TIMEOUT = 2.0
IO_TIMEOUT = 2.0
#: Seconds a move may take before its status fails (the longest move, 20 mm at 2 mm/s, is 10 s).
MOVE_TIMEOUT = 30.0

SUSPEND_BELOW_MA = 50.0
RESUME_ABOVE_MA = 90.0

_SIGNAL_TIMEOUTS = {"connection_timeout": CONNECTION_TIMEOUT, "timeout": IO_TIMEOUT}


class PVAccessError(RuntimeError):
    """A read or write of a PV failed; the message names the PV (and the signal)."""


class NamedPVFailures:
    """Mixin for EpicsSignal classes: a failed get/put says which PV it was about.

    pyepics reports e.g. ``ChannelAccessGetFailure: Get failed; status code: 192`` when the
    server of a PV goes away mid-read; the plan's failure (and the IOC's Status) then names
    the PV that vanished.
    """

    pvname: str
    name: str

    def _named(self, exc: Exception) -> PVAccessError:
        if isinstance(exc, PVAccessError):
            return exc
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        where = f"{self.pvname} ({self.name})"
        return PVAccessError(text if self.pvname in text else f"{where}: {text}")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get(*args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            raise self._named(exc) from exc

    def put(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().put(*args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            raise self._named(exc) from exc

    def read(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read(*args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            raise self._named(exc) from exc

    def describe(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().describe(*args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            raise self._named(exc) from exc


class PV(NamedPVFailures, EpicsSignal):
    """A read-write PV whose failures name it."""


class PVRO(NamedPVFailures, EpicsSignalRO):
    """A read-only PV whose failures name it."""


class SimMotor(PVPositionerPC):
    """A motor of the simulated beamline: ``SP`` completes its put when ``RBV`` has arrived."""

    setpoint = Component(PV, "SP", kind="normal", write_timeout=IO_TIMEOUT, **_SIGNAL_TIMEOUTS)
    readback = Component(PVRO, "RBV", kind="hinted", **_SIGNAL_TIMEOUTS)
    done = Component(PVRO, "DMOV", kind="omitted", **_SIGNAL_TIMEOUTS)
    velocity = Component(PV, "VELO", kind="config", **_SIGNAL_TIMEOUTS)
    done_value = 1


def motor(prefix: str, name: str, *, timeout: float | None = MOVE_TIMEOUT) -> SimMotor:
    return SimMotor(f"{prefix}{name}:", name=name, egu="mm", timeout=timeout)


def detector(prefix: str, name: str) -> EpicsSignalRO:
    return PVRO(f"{prefix}{name}", name=name, kind="hinted", **_SIGNAL_TIMEOUTS)


def beam_suspender(beam: EpicsSignalRO, sleep: float) -> SuspendFloor:
    return SuspendFloor(
        beam,
        suspend_thresh=SUSPEND_BELOW_MA,
        resume_thresh=RESUME_ABOVE_MA,
        sleep=sleep,
        tripped_message=(
            f"beam current below {SUSPEND_BELOW_MA:g} mA; "
            f"resumes {sleep:g} s after it is back above {RESUME_ABOVE_MA:g} mA"
        ),
    )


def build_profile() -> Profile:
    prefix = os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)
    sleep = float(os.environ.get(RESUME_SLEEP_ENV, "5"))
    beam = PVRO(f"{prefix}BeamCurrent", name="beam_current", **_SIGNAL_TIMEOUTS)
    devices = [
        motor(prefix, "m1"),
        motor(prefix, "m2"),
        detector(prefix, "det1"),
        detector(prefix, "det2"),
        beam,
    ]
    return Profile(
        devices=devices,
        plans=list(DEFAULT_PLANS),
        suspenders=[beam_suspender(beam, sleep)],
        metadata={"profile": "softioc_beamline", "beamline_prefix": prefix},
    )
