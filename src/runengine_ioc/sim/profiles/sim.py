"""The embedded default profile: ophyd's simulated devices and the standard plan library.

Devices are made fresh by :func:`ophyd.sim.hw` each time the profile is built: ``det``,
``det1``, ``det2``, ``det3``, ``noisy_det`` (Gaussian peaks on the motors), ``det4``/``det5``
(2-D Gaussians on ``motor1`` and ``motor2``), ``motor``, ``motor1``,
``motor2``, ``motor3``, ``jittery_motor1``/``2`` and more.
"""

from __future__ import annotations

from ophyd.sim import hw

from runengine_ioc import DEFAULT_PLANS, Profile

DEVICE_NAMES = (
    "det",
    "det1",
    "det2",
    "det3",
    "det4",
    "det5",
    "noisy_det",
    "motor",
    "motor1",
    "motor2",
    "motor3",
    "jittery_motor1",
    "jittery_motor2",
)


def build_profile() -> Profile:
    sim = hw()
    devices = {name: getattr(sim, name) for name in DEVICE_NAMES}
    return Profile(devices=devices, plans=list(DEFAULT_PLANS), metadata={"profile": "sim"})
