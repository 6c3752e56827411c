"""What a profile author imports from ``runengine_ioc`` is there, and costs nothing until used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import runengine_ioc


@pytest.mark.parametrize("name", runengine_ioc.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(runengine_ioc, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Worker'"):
        _ = runengine_ioc.Worker  # type: ignore[attr-defined]


def test_the_profile_names_are_the_ones_the_ioc_uses() -> None:
    from runengine_ioc.engine.annotations import Units
    from runengine_ioc.engine.profile import Profile, ProfileError
    from runengine_ioc.plans import DEFAULT_PLANS
    from runengine_ioc.plans.annotations import Units as OldUnits

    assert runengine_ioc.Profile is Profile
    assert runengine_ioc.ProfileError is ProfileError
    assert runengine_ioc.Units is Units is OldUnits
    assert runengine_ioc.DEFAULT_PLANS is DEFAULT_PLANS


def test_importing_the_package_imports_neither_bluesky_nor_caproto() -> None:
    probe = (
        "import sys, runengine_ioc; "
        "print(sorted(m for m in ('bluesky', 'caproto', 'ophyd') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
