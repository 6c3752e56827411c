"""runengine-ioc: an EPICS IOC that owns a bluesky RunEngine.

What a profile author may import from here (everything else is the IOC's own and may move):

- :class:`Profile`: what a beamline declares (devices, plans, callbacks, suspenders, metadata)
- :class:`ProfileError`: raise it from ``build_profile`` to refuse a profile with a message
- :class:`Units`: a ``typing.Annotated`` marker giving a plan parameter its EGU
- :class:`PointFactor`: a ``typing.Annotated`` marker: the parameter multiplies into the
  plan's number of points (checked against ``--max-points`` before the plan runs)
- ``DEFAULT_PLANS``: the plan library's plans (``count``, ``scan``, ...)
- :func:`read_run`, :func:`replay`, :func:`run_table`: read back the runs the IOC saved

Names are resolved on first use, so importing a submodule (the CA server, say) does not import
the RunEngine side with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runengine_ioc.data.files import read_run, replay, run_table
    from runengine_ioc.engine.annotations import PointFactor, Units
    from runengine_ioc.engine.profile import Profile, ProfileError
    from runengine_ioc.plans import DEFAULT_PLANS

__all__ = [
    "DEFAULT_PLANS",
    "PointFactor",
    "Profile",
    "ProfileError",
    "Units",
    "read_run",
    "replay",
    "run_table",
]

_HOMES = {
    "DEFAULT_PLANS": "runengine_ioc.plans",
    "PointFactor": "runengine_ioc.engine.annotations",
    "Profile": "runengine_ioc.engine.profile",
    "ProfileError": "runengine_ioc.engine.profile",
    "Units": "runengine_ioc.engine.annotations",
    "read_run": "runengine_ioc.data.files",
    "replay": "runengine_ioc.data.files",
    "run_table": "runengine_ioc.data.files",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'runengine_ioc' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(__all__)
