"""The gate's command-line flags (``--acf``, ``--policy``, ``--audit-log``, ...) and what
they build: kept here so that ``cli.py`` only adds them and passes the result on."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..access.acf import AccessConfig
from ..access.audit import AuditLog
from ..access.baton import Baton
from ..access.control import AccessControl
from ..access.policy import PlanPolicy
from ..engine.catalog import ServedProfile
from .gate import GateSettings

#: The audit log in the data directory (its own folder: the runs are the *.jsonl files).
AUDIT_FILE = "audit/audit.jsonl"


def add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of access security, the plan policy, the audit log and the baton."""
    group = parser.add_argument_group(
        "access",
        "who may do what (without --acf every client may write, as in a plain caproto IOC)",
    )
    group.add_argument(
        "--acf",
        metavar="FILE",
        help="EPICS access security file (UAG, HAG, ASG/RULE); PVs are in the groups "
        "DEFAULT, CONTROL, SELECT, ADMIN, QUEUE (see README)",
    )
    group.add_argument(
        "--policy",
        metavar="FILE",
        help="YAML: plans and devices allowed per user group (bluesky-queueserver's "
        "user_groups) and which clients belong to which group; also pv_groups",
    )
    group.add_argument(
        "--audit-log",
        metavar="FILE",
        help=f"JSON-lines audit log of every write (default: <data dir>/{AUDIT_FILE})",
    )
    group.add_argument(
        "--audit-max-bytes",
        type=int,
        default=10_000_000,
        help="rotate the audit log at this size (default: 10 MB, 5 old files kept)",
    )
    group.add_argument(
        "--baton-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="release the baton after this long without a write from its holder",
    )


def gate_settings(
    args: argparse.Namespace, data_dir: Path, setup: ServedProfile | None = None
) -> GateSettings:
    """Read the files the flags name; ValueError (ACFError, PolicyError) or OSError if bad.

    Without ``--policy``, the profile's ``access_policy`` (if any) is the policy; the
    profile's ``access_groups`` apply, and the policy file's ``pv_groups`` over them.
    """
    config = AccessConfig.from_file(args.acf) if args.acf else None
    overrides: dict[str, str] = dict(setup.access_groups) if setup is not None else {}
    policy = None
    if not args.policy and setup is not None and setup.access_policy is not None:
        policy = PlanPolicy.from_mapping(setup.access_policy, "the profile's access_policy")
    if args.policy:
        policy = PlanPolicy.from_file(args.policy)
        data = yaml.safe_load(Path(args.policy).read_text()) or {}
        pv_groups = data.get("pv_groups") or {}
        if not isinstance(pv_groups, dict):
            raise ValueError(f"{args.policy}: pv_groups must map PV names to groups")
        overrides.update({str(k): str(v) for k, v in pv_groups.items()})
    audit_path = Path(args.audit_log).expanduser() if args.audit_log else data_dir / AUDIT_FILE
    return GateSettings(
        control=AccessControl(config, Baton(timeout=args.baton_timeout)),
        audit=AuditLog(audit_path, max_bytes=args.audit_max_bytes),
        policy=policy,
        acf_path=args.acf,
        overrides=overrides,
        policy_from_profile=not args.policy,
    )
