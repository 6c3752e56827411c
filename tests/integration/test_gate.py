"""The gate over real Channel Access: access security per user and host, the plan policy,
the baton with live access-rights changes, the audit log, AccessReload.

Clients claim users and hosts with caproto's client (``NamedClient``); the EPICS base
tools (``ioc.ca``) run as this process's OS user on this host, the test's administrator.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runengine_ioc.data.files import read_run
from tests.polling import wait_until

from .ca_tools import EPICS_BIN
from .gate_clients import RO, RW, audit_lines, named_clients, wait_audit

ME = getpass.getuser()
MY_HOST = socket.gethostname()

ACF = f"""
UAG(ops) {{alice, bob}}
UAG(admins) {{{ME}}}
HAG(consoles) {{h1, h2, h7, "{MY_HOST}"}}
ASG(DEFAULT) {{ RULE(1, READ) }}
ASG(CONTROL) {{
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) {{ UAG(ops, admins) HAG(consoles) }}
}}
ASG(SELECT) {{
    RULE(1, READ)
    RULE(1, WRITE) {{ UAG(ops, admins) HAG(consoles) }}
}}
ASG(ADMIN) {{ RULE(1, READ) RULE(1, WRITE) {{ UAG(admins) }} }}
"""

POLICY = f"""
user_groups:
  root:
    allowed_plans: [null]
    forbidden_plans: ["^mv$"]
    allowed_devices: [null]
    forbidden_devices: [null]
  staff:
    allowed_plans: [".*"]
    allowed_devices: [":?.*:depth=2"]
  users:
    allowed_plans: ["^count$", "^scan$"]
    allowed_devices: ["^det$", "^motor$"]
members:
  staff: [alice, {ME}]
  users: ["*"]
"""

COUNT = {"detectors": ["det"], "num": 1}


@pytest.fixture
def gated(make_ioc, tmp_path: Path):  # type: ignore[no-untyped-def]
    acf = tmp_path / "gate.acf"
    acf.write_text(ACF)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    ioc = make_ioc("--acf", str(acf), "--policy", str(policy))
    ioc.acf = acf
    ioc.audit = ioc.data_dir / "audit" / "audit.jsonl"
    return ioc


def test_rights_follow_the_clients_user_and_host(gated):
    with named_clients(gated, ("eve", "h1"), ("alice", "h9"), ("alice", "h1"), ("bob", "H2")) as (
        eve,
        alice_away,
        alice,
        bob,
    ):
        assert eve.rights("Start") == RO  # not in ops: may read CONTROL, not write
        assert eve.rights("State") == RO
        assert eve.get_text("Access:Mode") == "acf gate.acf"
        assert alice_away.rights("Start") == RO  # in ops, but not on a console
        assert alice.rights("Start") == RW
        assert alice.rights("PlanName") == RW
        assert bob.rights("Start") == RW  # host names compare without case, as in EPICS 7
        assert alice.rights("Reload") == RO  # ADMIN
        assert alice.rights("Start.DESC") == RO  # record fields: read-only, the PV's group
        assert alice.rights("State") == RO  # a read-only PV stays read-only

        eve.put("Start", 1)  # caproto's client sends it anyway: the IOC refuses it
        line = wait_audit(gated.audit, user="eve", pv="Start")
        assert not line["accepted"]
        assert line["reason"] == "eve@h1 has no write access (access security group CONTROL)"
        assert gated.ca.get_text("Status") == f"refused: Start: {line['reason']}"
        assert gated.ca.get("State") == "idle"
        assert gated.runs() == []

        alice.put_wait("PlanName", "count")
        assert wait_audit(gated.audit, user="alice", pv="PlanName")["accepted"]
        assert gated.ca.get("PlanName") == "count"
        # writes that caproto alone would turn away are in the log too
        eve.put("State", 1)
        assert wait_audit(gated.audit, user="eve", pv="State")["reason"] == "read-only PV"
        alice.put("Start.DESC", "mine")
        line = wait_audit(gated.audit, user="alice", pv="Start.DESC")
        assert not line["accepted"] and "record fields are not writable" in line["reason"]
        assert gated.ca.get("Start.DESC") != "mine"


def test_forbidden_plans_and_devices_are_refused_naming_the_rule(gated):
    with named_clients(gated, ("bob", "h2"), ("alice", "h1")) as (bob, alice):
        cases = [
            (
                {"plan": "fail_after", "args": {"detectors": ["det"]}},
                "plan 'fail_after' is not in allowed_plans of group 'users' ('^count$', '^scan$')",
            ),
            (
                {"plan": "mv", "args": {"device": "motor", "position": 1}},
                "plan 'mv' is forbidden for group 'root' (forbidden_plans: '^mv$')",
            ),
            (
                {"plan": "count", "args": {"detectors": ["det.Imax"], "num": 1}},
                "device 'det.Imax' is not in allowed_devices of group 'users'",
            ),
            (
                {"plan": "count", "args": {"detectors": "det det2", "num": 1}},
                "device 'det2' is not in allowed_devices of group 'users'",
            ),
        ]
        for index, (submission, reason) in enumerate(cases):
            bob.put("Submit", submission)
            line = wait_until(
                lambda n=index + 1: (
                    len([x for x in audit_lines(gated.audit) if x["pv"] == "Submit"]) >= n
                    and audit_lines(gated.audit)[-1]
                ),
                timeout=10,
            )
            assert not line["accepted"] and line["user"] == "bob"
            assert reason in line["reason"], line
            assert reason in gated.ca.get_text("Status")
        # the same policy at Start (PlanName/PlanArgs) and at a form's Start
        bob.put_wait("PlanName", "fail_after")
        bob.put("Start", 1)
        line = wait_audit(gated.audit, user="bob", pv="Start")
        assert "plan 'fail_after' is not in allowed_plans of group 'users'" in line["reason"]
        bob.put_wait("count:detectors", "det.Imax")
        bob.put("count:Start", 1)
        line = wait_audit(gated.audit, user="bob", pv="count:Start")
        assert "device 'det.Imax' is not in allowed_devices" in line["reason"]
        assert gated.runs() == []

        # staff may use components; the start document records who started the run
        alice.put_wait("Submit", {"plan": "count", "args": {"detectors": ["det.Imax"], "num": 1}})
        start = read_run(gated.runs()[-1])[0][1]
        assert start["started_by"] == {"user": "alice", "host": "h1", "pv": "Submit"}
        assert wait_audit(gated.audit, user="alice", pv="Submit")["reason"] == "runs count"
        # nobody may set started_by themselves
        alice.put("Submit", {"plan": "count", "args": COUNT, "metadata": {"started_by": "x"}})
        line = wait_until(
            lambda: (
                audit_lines(gated.audit)[-1]["accepted"] is False and audit_lines(gated.audit)[-1]
            ),
            timeout=10,
        )
        assert "Metadata may not set started_by" in line["reason"]
        assert len(gated.runs()) == 1


def test_the_baton_greys_out_others_live_and_comes_back(gated):
    with named_clients(gated, ("alice", "h1"), ("bob", "h2")) as (alice, bob):
        for suffix in ("Start", "PlanName", "Lock:Take", "Pause"):
            assert bob.rights(suffix) == RW
        assert alice.rights("Start") == RW
        alice.put_wait("Lock:Take", 1)
        assert gated.ca.get_text("Lock:Owner") == "alice@h1"
        # bob's connected channels get the new rights without reconnecting
        wait_until(lambda: bob.rights("Start") == RO and bob.rights("PlanName") == RO, 5)
        assert bob.rights_seen["Start"][-1] == RO
        assert bob.rights("State") == RO and alice.rights("Start") == RW
        bob.put("PlanName", "scan")
        line = wait_audit(gated.audit, user="bob", pv="PlanName")
        assert line["reason"] == "the baton is held by alice@h1" and not line["accepted"]
        alice.put_wait("PlanName", "count")  # the holder goes on
        bob.put("Lock:Release", 1)
        assert not wait_audit(gated.audit, user="bob", pv="Lock:Release")["accepted"]
        assert gated.ca.get_text("Lock:Owner") == "alice@h1"

        alice.put_wait("Lock:Release", 1)
        wait_until(lambda: bob.rights("Start") == RW and bob.rights("PlanName") == RW, 5)
        assert gated.ca.get_text("Lock:Owner") == ""

        bob.put_wait("Lock:Take", 1)
        wait_until(lambda: alice.rights("Start") == RO, 5)
        gated.ca.put_ok("Lock:Break", 1)  # the administrator (this OS user) breaks it
        wait_until(lambda: alice.rights("Start") == RW, 5)
        assert gated.ca.get_text("Lock:Owner") == ""
        assert "broken by" in gated.ca.get_text("Status")
        for user, pv, accepted in [
            ("alice", "Lock:Take", True),
            ("bob", "PlanName", False),
            ("alice", "PlanName", True),
            ("bob", "Lock:Release", False),
            ("alice", "Lock:Release", True),
            ("bob", "Lock:Take", True),
            (ME, "Lock:Break", True),
        ]:
            assert wait_audit(gated.audit, user=user, pv=pv)["accepted"] is accepted
        last = gated.ca.get_text("Audit:Last")
        assert f"{ME}@{MY_HOST} Lock:Break=1" in last and last.endswith(" accepted")


def test_a_write_racing_the_baton_is_refused_exactly_when_it_comes_after_the_take(gated):
    """60 tries, bob's write sent from 5 ms before to 5 ms after alice's take: each write is
    in the audit log once, and refused exactly when it arrived after the take."""
    tries = 60
    with named_clients(gated, ("alice", "h1"), ("bob", "h2")) as (alice, bob):
        bob.pv("Metadata"), alice.pv("Lock:Take"), alice.pv("Lock:Release")
        for index in range(tries):
            offset = (index % 11 - 5) / 1000  # -5 to +5 ms: the offset under test
            take = (alice, "Lock:Take", 1)
            write = (bob, "Metadata", f'{{"try": {index}}}')
            first, second = (take, write) if offset >= 0 else (write, take)
            first[0].put(first[1], first[2])
            time.sleep(abs(offset))  # not a wait: the offset between the two writes
            second[0].put(second[1], second[2])
            wait_audit(gated.audit, pv="Lock:Take", accepted=True, nth=index)
            wait_audit(gated.audit, user="bob", value=f'{{"try": {index}}}')
            alice.put_wait("Lock:Release", 1)
        lines = audit_lines(gated.audit)
    outcomes = []
    takes = [x for x in lines if x["pv"] == "Lock:Take" and x["accepted"]]
    for index in range(tries):
        (write,) = [x for x in lines if x["user"] == "bob" and x["value"] == f'{{"try": {index}}}']
        # the lines' times are the writes' arrivals: the order in which the IOC decided
        assert write["accepted"] is (write["time"] < takes[index]["time"]), (index, write)
        if not write["accepted"]:
            assert write["reason"] == "the baton is held by alice@h1"
        outcomes.append(write["accepted"])
    assert len(takes) == tries and len([x for x in lines if x["user"] == "bob"]) == tries
    print(f"accepted before the take: {sum(outcomes)} of {tries}")


RIGHTS_WATCHER = Path(__file__).with_name("pyepics_rights.py")


def test_libca_as_another_os_user_cannot_write_control_but_reads(gated):
    """caput/caget as the OS user nobody (libca sends the OS account): EPICS base's own
    client refuses the put itself, as it would against softIoc with the same file."""
    if shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs root and runuser(1) to be another OS user")
    tool = str(EPICS_BIN / "caput")
    as_nobody = ["runuser", "-u", "nobody", "--"]
    put = subprocess.run(
        [*as_nobody, tool, "-c", gated.ca.pv("Start"), "1"],
        env=gated.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert put.returncode != 0 and "Write access denied" in put.stdout + put.stderr
    get = subprocess.run(
        [*as_nobody, str(EPICS_BIN / "caget"), "-t", gated.ca.pv("State")],
        env=gated.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert get.returncode == 0 and get.stdout.strip() == "idle"
    assert gated.ca.get("State") == "idle" and gated.runs() == []
    gated.ca.put_ok("PlanName", "count")  # this OS user (admins, on a console) may


def test_a_libca_client_sees_the_baton_move_without_reconnecting(gated):
    """pyepics (libca) as this OS user on host h7 (its own UTS namespace): its access-rights
    callback fires when another client takes and releases the baton."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a client with another host name")
    script = f"hostname h7 && exec {sys.executable} {RIGHTS_WATCHER} {gated.ca.pv('Start')}"
    proc = subprocess.Popen(
        ["unshare", "-u", "sh", "-c", script],
        env=gated.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[dict] = []
    reader = threading.Thread(
        target=lambda: [lines.append(json.loads(line)) for line in proc.stdout or ()],
        daemon=True,
    )
    reader.start()
    try:
        wait_until(lambda: any(x.get("ready") for x in lines), 15, what="pyepics to connect")
        assert [x["write"] for x in lines if "write" in x] == [True]
        with named_clients(gated, ("alice", "h1")) as (alice,):
            alice.put_wait("Lock:Take", 1)
            wait_until(lambda: [x["write"] for x in lines if "write" in x] == [True, False], 5)
            alice.put_wait("Lock:Release", 1)
            wait_until(
                lambda: [x["write"] for x in lines if "write" in x] == [True, False, True], 5
            )
        assert all(x["read"] for x in lines if "read" in x)
        assert f"{ME}@h7" not in gated.ca.get_text("Lock:Owner")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_baton_times_out_when_its_holder_is_idle(make_ioc):
    ioc = make_ioc("--baton-timeout", "1")
    with named_clients(ioc, ("alice", "h1"), ("bob", "h2")) as (alice, bob):
        alice.put_wait("Lock:Take", 1)
        wait_until(lambda: bob.rights("Start") == RO, 5)
        wait_until(lambda: bob.rights("Start") == RW, 10)  # back by itself, live
        assert ioc.ca.get_text("Lock:Owner") == ""
        assert "idle" in ioc.ca.get_text("Status")


def test_calc_rules_read_the_iocs_own_pvs(make_ioc, tmp_path):
    acf = tmp_path / "calc.acf"
    prefix = "TCALC" + tmp_path.name[-6:].replace("_", "") + ":"
    acf.write_text(
        f"UAG(late) {{eve}}\nUAG(ops) {{{ME}}}\n"
        "ASG(DEFAULT) { RULE(1, READ) RULE(1, WRITE) { UAG(ops) } }\n"
        f'ASG(SELECT) {{ INPA("{prefix}Busy") INPB("{prefix}State") RULE(1, READ)\n'
        '  RULE(1, WRITE) { UAG(late) CALC("A=0&&B=0") } RULE(1, WRITE) { UAG(ops) } }\n'
    )
    ioc = make_ioc("--acf", str(acf), prefix=prefix)
    with named_clients(ioc, ("eve", "h1")) as (eve,):
        assert eve.rights("PlanName") == RW  # Busy is 0 (Idle), State 0 (idle)
        assert eve.rights("Start") == RO  # CONTROL is not in the file: DEFAULT
        # the rights follow the inputs live: a plan running greys eve's PlanName out, on the
        # same connection, and its end gives it back
        ioc.ca.configure("count", {"detectors": ["det"], "num": 30, "delay": 0.05})
        pending = ioc.ca.start_put("Start", 1)
        wait_until(lambda: eve.rights("PlanName") == RO, 10, what="PlanName read-only")
        assert pending.wait(timeout=60) == 0
        wait_until(lambda: eve.rights("PlanName") == RW, 10, what="PlanName writable again")


def test_a_profile_gives_the_policy_and_moves_pvs_to_other_groups(make_ioc, tmp_path):
    acf = tmp_path / "gate.acf"
    acf.write_text(ACF)
    ioc = make_ioc(
        "--acf", str(acf), profile=str(Path(__file__).with_name("profile_with_access.py"))
    )
    audit = ioc.data_dir / "audit" / "audit.jsonl"
    with named_clients(ioc, ("alice", "h1")) as (alice,):
        assert alice.rights("Pause") == RO  # moved to ADMIN by the profile
        assert alice.rights("Resume") == RW
        alice.put("Submit", {"plan": "mv", "args": {"device": "motor", "position": 1}})
        line = wait_audit(audit, user="alice", pv="Submit")
        assert "plan 'mv' is not in allowed_plans of group 'everyone' ('^count$')" in line["reason"]
        alice.put_wait("Submit", {"plan": "count", "args": COUNT})
        assert len(ioc.runs()) == 1


def test_access_reload_changes_rights_live(gated):
    with named_clients(gated, ("eve", "h1")) as (eve,):
        assert eve.rights("Start") == RO
        gated.acf.write_text(ACF.replace("UAG(ops) {alice, bob}", "UAG(ops) {alice, bob, eve}"))
        gated.ca.put_ok("AccessReload", 1)
        wait_until(lambda: eve.rights("Start") == RW, 5)
        gated.acf.write_text("ASG(DEFAULT) {")  # broken: the rules in service stay
        result = gated.ca.put("AccessReload", 1)
        assert not result.ok
        assert "the previous access rules stay in service" in gated.ca.get_text("Status")
        assert eve.rights("Start") == RW


def test_without_acf_access_is_open_and_says_so(ioc):
    with named_clients(ioc, ("anyone", "anywhere")) as (anyone,):
        assert anyone.rights("Start") == RW and anyone.rights("Start.DESC") == RW
        assert anyone.get_text("Access:Mode") == "open"
    assert "no --acf: access is open" in ioc.log()


def test_a_broken_acf_stops_the_start(make_ioc, tmp_path):
    acf = tmp_path / "bad.acf"
    acf.write_text("ASG(X) {\n    RULE(1, WRITE) { UAG(ghosts) }\n}\n")
    with pytest.raises(RuntimeError, match="exited at start-up") as info:
        make_ioc("--acf", str(acf))
    assert "RULE names undefined UAG(ghosts)" in str(info.value)
