"""Test profile: the test plans plus one that records how bluesky keeps a plan stub's stack."""

from __future__ import annotations

from pathlib import Path

import bluesky.plan_stubs as bps

from runengine_ioc.engine.profile import Profile, load_profile


def stack_probe():  # type: ignore[no-untyped-def]
    """One empty run whose start document says what a plan stub keeps for its warning."""
    stub = bps.null()
    kind = type(stub._stack).__name__
    yield from stub
    yield from bps.open_run(md={"plan_stub_stack": kind})
    yield from bps.close_run()


def build_profile() -> Profile:
    profile = load_profile(str(Path(__file__).with_name("profile_for_tests.py")))
    plans = profile.plans
    named = dict(plans) if isinstance(plans, dict) else {p.__name__: p for p in plans}
    profile.plans = {**named, "stack_probe": stack_probe}
    return profile
