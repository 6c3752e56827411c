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

DEFAULT_PROFILE = "runengine_ioc.profiles.sim"

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
        Defaults merged into every start document (e.g. ``beamline_id``).
    """

    devices: Mapping[str, Any] | Sequence[Any] = field(default_factory=dict)
    plans: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]] = field(
        default_factory=list
    )
    callbacks: Sequence[Callable[[str, dict], Any]] = field(default_factory=list)
    suspenders: Sequence[Any] = field(default_factory=list)
    metadata: Mapping[str, Any] = field(default_factory=dict)


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
