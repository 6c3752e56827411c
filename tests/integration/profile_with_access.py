"""Test profile: the test profile, with its own plan policy and a PV moved to ADMIN."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runengine_ioc import Profile
from runengine_ioc.engine.profile import load_profile


def build_profile() -> Profile:
    return dataclasses.replace(
        load_profile(str(Path(__file__).with_name("profile_for_tests.py"))),
        access_policy={
            "user_groups": {"everyone": {"allowed_plans": ["^count$"]}},
            "members": {"everyone": ["*"]},
        },
        access_groups={"Pause": "ADMIN"},
    )
