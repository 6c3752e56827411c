"""The IOC runs plans with bluesky's plan-stub stacks kept lazily (installed by the CLI before
the worker is built): a plan run through Start sees the lazy kind, not bluesky's list."""

from __future__ import annotations

from pathlib import Path

from runengine_ioc.data.files import read_run

PROFILE = str(Path(__file__).with_name("profile_stack_probe.py"))


def test_plans_in_the_ioc_run_with_lazy_plan_stub_stacks(make_ioc):
    ioc = make_ioc(profile=PROFILE)
    ioc.ca.configure("stack_probe", {})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    start = read_run(ioc.runs()[-1])[0][1]
    assert start["plan_stub_stack"] == "LazyPlanStack"
