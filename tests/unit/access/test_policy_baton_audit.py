"""Allow-lists (queueserver's semantics), the baton, the audit log, rights with the baton."""

from __future__ import annotations

import json
from collections import UserList
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from bluesky.protocols import Movable, Readable

from runengine_ioc.access.acf import Access, AccessConfig
from runengine_ioc.access.audit import AuditLog, shown_value
from runengine_ioc.access.baton import Baton, BatonRefusal
from runengine_ioc.access.control import AccessControl
from runengine_ioc.access.groups import default_group, group_of
from runengine_ioc.access.identity import Client
from runengine_ioc.access.policy import (
    Pattern,
    PlanPolicy,
    PolicyError,
    PolicyRefusal,
    devices_named,
)
from runengine_ioc.engine.catalog import RegistryView
from runengine_ioc.engine.registry import Registry

EXAMPLES = Path(__file__).parents[3] / "examples"
ALICE, BOB, CAROL = Client("alice", "ctl1"), Client("bob", "h2"), Client("carol", "CTL1")


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("^det$", "det", True),
        ("^det$", "det.Imax", False),  # plain patterns: top-level names only
        ("det", "det2", True),  # re.search, as queueserver
        (":^det:?.*", "det", True),
        (":^det:?.*", "det.Imax", True),
        (":^det:?.*", "det.a.b", True),
        (":^det:?.*", "motor.Imax", False),
        (":^det:^Imax$", "det.Imax", True),
        (":^det:^Imax$", "det", False),
        (":^det:^Imax$", "det.sigma", False),
        (":?.*:depth=2", "det.Imax", True),
        (":?.*:depth=2", "det.a.b", False),
        (":^_:?.*", "_secret.x", True),
    ],
)
def test_device_patterns(pattern, name, matches):
    assert Pattern.compile(pattern, "test").matches(name, everything_if_null=True) is matches


def test_the_example_policy_allows_and_refuses_naming_the_rule():
    policy = PlanPolicy.from_file(EXAMPLES / "policy.yaml")
    assert policy.group_of(ALICE) == "staff" and policy.group_of(CAROL) == "users"
    policy.check(ALICE, "fly", ["det.Imax", "motor1"])
    policy.check(CAROL, "scan", ["det", "motor"])
    with pytest.raises(PolicyRefusal, match=r"plan '_hidden' is forbidden for group 'root'"):
        policy.check(ALICE, "_hidden", [])
    with pytest.raises(PolicyRefusal, match=r"plan 'fly' is not in allowed_plans of group 'u"):
        policy.check(CAROL, "fly", [])
    with pytest.raises(PolicyRefusal, match=r"device 'det.Imax' is not in allowed_devices"):
        policy.check(CAROL, "count", ["det", "det.Imax"])


def test_members_by_user_host_or_both():
    policy = PlanPolicy.from_mapping(
        {
            "user_groups": {"a": {}, "b": {"allowed_plans": ["^count$"]}},
            "members": {"a": ["alice@CTL1", "@console"], "b": "*"},
        }
    )
    assert policy.group_of(Client("alice", "ctl1")) == "a"
    assert policy.group_of(Client("alice", "h2")) == "b"
    assert policy.group_of(Client("zed", "console")) == "a"
    nobody = PlanPolicy.from_mapping({"user_groups": {"a": {}}, "members": {"a": ["x"]}})
    with pytest.raises(PolicyRefusal, match="belongs to no user group"):
        nobody.check(BOB, "count", [])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "needs a 'user_groups' mapping"),
        ({"user_groups": {"a": {"allowed_plans": "x"}}}, "must be a list"),
        ({"user_groups": {"a": {"allowed_plans": ["("]}}}, "not a valid pattern"),
        ({"user_groups": {"a": {}}, "members": {"b": ["x"]}}, "'b' is not a user group"),
    ],
)
def test_bad_policies_are_refused(data, message):
    with pytest.raises(PolicyError, match=None) as info:
        PlanPolicy.from_mapping(data)
    assert message in str(info.value)


def test_devices_named_reads_device_parameters_only(devices):
    registry = RegistryView.local(Registry({"det": devices.det, "motor": devices.motor}, _plans()))
    assert devices_named(registry, "scan", {"detectors": "det det.Imax", "motor": "motor"}) == [
        "det",
        "det.Imax",
        "motor",
    ]
    assert devices_named(registry, "scan", {"detectors": ["det"], "label": "motor"}) == ["det"]


def scan(detectors: Sequence[Readable], motor: Movable | None = None, label: str = ""):  # type: ignore[no-untyped-def]
    yield from ()


def _plans():  # type: ignore[no-untyped-def]
    return [scan]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_baton_take_release_break_and_timeout():
    clock = Clock()
    baton = Baton(timeout=10, clock=clock)
    assert baton.take(ALICE) is True and baton.take(ALICE) is False
    with pytest.raises(BatonRefusal, match="held by alice@ctl1"):
        baton.take(BOB)
    with pytest.raises(BatonRefusal, match="not by bob@h2"):
        baton.release(BOB)
    assert baton.blocks(BOB, "CONTROL") == ALICE and baton.blocks(BOB, "SELECT") == ALICE
    assert baton.blocks(BOB, "ADMIN") is None and baton.blocks(ALICE, "CONTROL") is None
    clock.now = 9
    baton.touch(ALICE)  # a write by the holder keeps it
    clock.now = 18
    assert baton.current() == ALICE
    clock.now = 19.5
    assert baton.current() is None and baton.blocks(BOB, "CONTROL") is None
    baton.take(BOB)
    assert baton.break_() == BOB and baton.current() is None
    assert baton.release(ALICE) is False


def test_rights_combine_the_file_and_the_baton():
    config = AccessConfig.from_text(
        "UAG(ops) {alice, bob} ASG(DEFAULT) { RULE(1, READ) }"
        "ASG(CONTROL) { RULE(1, READ) RULE(1, WRITE) { UAG(ops) } }"
        "ASG(ADMIN) { RULE(1, WRITE) }"
    )
    control = AccessControl(config)
    assert control.grant("CONTROL", ALICE).write and control.grant("CONTROL", BOB).write
    assert control.write_refusal("CONTROL", CAROL) == (
        "carol@CTL1 has no write access (access security group CONTROL)"
    )
    control.baton.take(ALICE)
    assert control.grant("CONTROL", BOB).access == Access.READ
    assert control.write_refusal("CONTROL", BOB) == "the baton is held by alice@ctl1"
    assert control.grant("ADMIN", BOB).write and control.grant("CONTROL", ALICE).write
    control.reload(None)  # open: everyone writes, the baton still holds
    assert control.grant("DEFAULT", CAROL).write
    assert control.write_refusal("SELECT", CAROL) == "the baton is held by alice@ctl1"


def test_default_groups():
    assert default_group("Start") == "CONTROL" and default_group("Submit") == "CONTROL"
    assert default_group("PlanArgs") == "SELECT" and default_group("Reload") == "ADMIN"
    assert default_group("State", writable=False) == "DEFAULT"
    assert default_group("scan:num", form=True) == "SELECT"
    assert default_group("scan:Start", form=True) == "CONTROL"
    assert default_group("scan:Doc", form=True, writable=False) == "DEFAULT"
    assert default_group("Queue:Add") == "QUEUE"
    assert group_of("Pause", {"Pau*": "OPERATOR"}) == "OPERATOR"


def test_the_audit_log_appends_rotates_and_tells(tmp_path):
    seen = []
    log = AuditLog(tmp_path / "a" / "audit.jsonl", max_bytes=400, backups=2, listener=seen.append)
    for index in range(12):
        log.record(ALICE, "PlanArgs", np.frombuffer(b'{"num": 1}\0', dtype=np.uint8), True)
        log.record(BOB, "Start", np.array([1], dtype=np.uint16), False, f"refused {index}")
    log.close()
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    last = json.loads((tmp_path / "a" / "audit.jsonl").read_text().splitlines()[-1])
    assert last["user"] == "bob" and last["value"] == 1 and last["reason"] == "refused 11"
    assert not last["accepted"]
    assert seen[-1].summary().endswith("bob@h2 Start=1 refused (refused 11)")
    assert len(seen) == 24


def test_shown_values_are_short_and_readable():
    assert shown_value(np.frombuffer(b"scan\0\0", dtype=np.uint8)) == "scan"
    assert shown_value([2.5]) == 2.5 and shown_value(UserList([b"scan"])) == "scan"
    assert shown_value("x" * 2000).endswith("...") and len(shown_value("x" * 2000)) == 512
    assert shown_value([1, 2]) == "[1, 2]"


def test_the_example_policy_is_valid_yaml_with_pv_groups():
    data = yaml.safe_load((EXAMPLES / "policy.yaml").read_text())
    assert data["pv_groups"] == {}
