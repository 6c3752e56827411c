"""Test profile with a document callback that raises on every event (a broken sink)."""

from __future__ import annotations

from pathlib import Path

from runengine_ioc.engine.profile import Profile, load_profile


def broken_sink(name: str, doc: dict) -> None:
    """A sink that fails: raises on every event document."""
    if name == "event":
        raise OSError("broken sink: disk full")


def build_profile() -> Profile:
    profile = load_profile(str(Path(__file__).with_name("profile_for_tests.py")))
    profile.callbacks = [broken_sink]
    return profile
