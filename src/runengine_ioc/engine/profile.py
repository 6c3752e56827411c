"""Profiles: what a beamline declares (devices, plans, callbacks, suspenders, metadata).

A profile is a Python module (``package.module``) or file (``path/to/profile.py``) that defines
``build_profile() -> Profile``. It is imported fresh each time it is loaded, so devices are
made anew and nothing lives in process-global state.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .registry import DEFAULT_MAX_POINTS, Registry

DEFAULT_PROFILE = "runengine_ioc.sim.profiles.sim"

_file_counter = itertools.count()


@dataclass
class Profile:
    """Everything the IOC needs from a beamline.

    Attributes
    ----------
    devices
        ophyd (or ophyd-async) devices, keyed by name or given as a sequence (keyed by ``.name``).
    plans
        Generator functions that may be run, keyed by name or given as a sequence.
    callbacks
        Document callbacks subscribed to the RunEngine in addition to the local files sink.
    suspenders
        bluesky suspenders installed on the RunEngine.
    metadata
        Defaults merged into every start document (e.g. ``beamline_id``); a client's Metadata
        may not replace them.
    max_points
        The largest plan (in points) this beamline runs, ``None`` for the IOC's
        ``--max-points`` alone; the smaller of the two applies.
    """

    devices: Mapping[str, Any] | Sequence[Any] = field(default_factory=dict)
    plans: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]] = field(
        default_factory=list
    )
    callbacks: Sequence[Callable[[str, dict], Any]] = field(default_factory=list)
    suspenders: Sequence[Any] = field(default_factory=list)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # who may run what (runengine_ioc.access): the --policy file's content, and PVs moved to
    # other access security groups; the --policy file, when given, wins
    access_policy: Mapping[str, Any] | None = None
    access_groups: Mapping[str, str] = field(default_factory=dict)
    max_points: int | None = None


class ProfileError(RuntimeError):
    """The profile could not be loaded; the message says why."""


def _import_fresh(spec: str) -> ModuleType:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ProfileError(f"profile file not found: {spec}")
        name = f"_runengine_ioc_profile_{path.stem}_{next(_file_counter)}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ProfileError(f"cannot load profile file {spec}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    loaded = sys.modules.get(spec)
    if loaded is not None:
        return importlib.reload(loaded)
    return importlib.import_module(spec)


def load_profile(spec: str = DEFAULT_PROFILE) -> Profile:
    """Import a profile module or file and build its :class:`Profile`."""
    try:
        module = _import_fresh(spec)
    except ProfileError:
        raise
    except Exception as exc:
        raise ProfileError(
            f"profile {spec!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    build = getattr(module, "build_profile", None)
    if not callable(build):
        raise ProfileError(f"profile {spec!r} defines no build_profile() function")
    try:
        profile = build()
    except Exception as exc:
        raise ProfileError(
            f"profile {spec!r} failed to build: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(profile, Profile):
        raise ProfileError(f"profile {spec!r}: build_profile() must return a Profile")
    return profile


def as_list(items: Mapping[str, Any] | Iterable[Any]) -> list[Any]:
    return list(items.values()) if isinstance(items, Mapping) else list(items)


def load_happi_devices(path: str) -> dict[str, Any]:
    """Instantiate the active items of a happi JSON database, keyed by name."""
    try:
        from happi import Client
        from happi.backends.json_db import JSONBackend
        from happi.loader import from_container
    except ImportError as exc:
        raise ProfileError("--happi-db needs happi: pip install 'runengine-ioc[happi]'") from exc
    if not Path(path).is_file():
        raise ProfileError(f"happi database not found: {path}")
    devices: dict[str, Any] = {}
    try:
        client = Client(database=JSONBackend(path))
        for result in client.search(active=True):
            item = result.item
            devices[item.name] = from_container(item, use_cache=False)
    except Exception as exc:
        raise ProfileError(f"happi database {path}: {type(exc).__name__}: {exc}") from exc
    return devices


@dataclass
class Setup:
    """What a loaded profile gives the IOC: the registry and the RunEngine's extras."""

    registry: Registry
    callbacks: list[Callable[[str, dict], Any]]
    suspenders: list[Any]
    metadata: dict[str, Any]
    description: str
    on_applied: Callable[[], None] | None = None  # called once the IOC serves this set-up
    access_policy: Mapping[str, Any] | None = None  # the profile's (see Profile)
    access_groups: dict[str, str] = field(default_factory=dict)


def build_setup(
    spec: str,
    happi_db: str | None = None,
    *,
    reload_modules: Sequence[str] = (),
    max_points: int = DEFAULT_MAX_POINTS,
) -> Setup:
    """Load the profile (and happi devices) and build the registry; ProfileError if broken.

    ``max_points`` is the IOC's limit on a plan's size (``--max-points``); the profile's own
    ``max_points``, if smaller, applies instead: either may only make the IOC safer.

    The modules named in ``reload_modules`` (the plan library, on Reload) are re-read first, so
    a Reload picks up their edits. They are named, not imported here: the engine does not
    depend on any plan library.
    """
    for name in reload_modules:
        try:
            importlib.reload(importlib.import_module(name))
        except Exception as exc:
            raise ProfileError(f"{name} failed to reload: {exc}") from exc
    profile = load_profile(spec)
    devices = (
        dict(profile.devices)
        if isinstance(profile.devices, Mapping)
        else {getattr(d, "name", None): d for d in profile.devices}
    )
    if happi_db:
        for name, device in load_happi_devices(happi_db).items():
            if name in devices:
                raise ProfileError(f"device {name!r} is both in the profile and in happi")
            devices[name] = device
    limit = max_points
    if profile.max_points is not None:
        if isinstance(profile.max_points, bool) or not isinstance(profile.max_points, int):
            raise ProfileError(f"profile {spec!r}: max_points must be an integer")
        if profile.max_points < 1:
            raise ProfileError(f"profile {spec!r}: max_points must be at least 1")
        limit = min(limit, profile.max_points)
    try:
        registry = Registry(
            devices, profile.plans, max_points=limit, metadata_keys=profile.metadata
        )
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"profile {spec!r}: {exc}") from exc
    source = spec + (f" + happi {happi_db}" if happi_db else "")
    return Setup(
        registry,
        list(profile.callbacks),
        as_list(profile.suspenders),
        dict(profile.metadata),
        source,
        access_policy=profile.access_policy,
        access_groups=dict(profile.access_groups),
    )
