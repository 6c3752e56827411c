"""Conformance: the IOC looks to a Channel Access client as EPICS base's softIoc does.

softIoc serves ``data/conformance.db``: one record of each type the IOC serves (stringout,
waveform CHAR and STRING, bo, bi, mbbi, mbbo, longin, longout, ai, ao, stringin), each named
and configured as the IOC's PV it mirrors. Both are driven with the same EPICS base tools
(caget, caput, camonitor) and pyepics operations, and what the client sees must be the same,
apart from the deliberate differences listed in :data:`DELIBERATE` (and in README, "How the
IOC differs from a softIoc").
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runengine_ioc.sim.beamline import find_softioc
from tests.polling import wait_until

from .ca_tools import CaTools, ServerProcess
from .conftest import TEST_PROFILE, IOCProcess, _free_port, loopback_env
from .pyepics_ops import pyepics

DB = Path(__file__).with_name("data") / "conformance.db"

#: What a client sees differently, on purpose (README lists the same).
DELIBERATE = {
    "fields": "record fields are the IOC's: a client's put to one is refused (softIoc: allowed)",
    "inputs": "input records (ai, bi, mbbi, longin, stringin) refuse puts: no write access",
    "out of range": "a form value outside DRVL/DRVH is refused with the reason (ao/longout clamp)",
    "not a state": "a bo/mbbo put of a number that is no state is refused (softIoc: accepted, "
    "reads Illegal_Value)",
    "SOFT": "an unset required form field is INVALID/SOFT (softIoc: INVALID/UDF): caget crashes "
    "reading a caproto STAT of UDF",
    "refused put alarm": "a refused put leaves WRITE/MAJOR on the PV until a good put (caproto; "
    "softIoc: no alarm)",
    "NUL": "a char waveform's element count leaves out the terminating NUL that caput -S sent "
    "(softIoc keeps it: NORD one more)",
    "long alarm limits": "longin/longout report alarm limits 0 to DBR_CTRL_DOUBLE (softIoc: NaN)",
}

#: The PVs compared, each with the request type that shows all of its metadata.
PVS = {
    "PlanName": "DBR_STS_STRING",
    "RunUid": "DBR_STS_STRING",
    "PlanArgs": "DBR_CTRL_CHAR",
    "PlanList": "DBR_STS_STRING",
    "Start": "DBR_CTRL_ENUM",
    "Busy": "DBR_CTRL_ENUM",
    "State": "DBR_CTRL_ENUM",
    "scan:motor": "DBR_CTRL_ENUM",
    "ScanId": "DBR_CTRL_LONG",
    "scan:num": "DBR_CTRL_LONG",
    "Progress": "DBR_CTRL_DOUBLE",
    "scan:start": "DBR_CTRL_DOUBLE",
}
FORM_PVS = ("scan:motor", "scan:num", "scan:start")
#: Fields a client reads, per PV (those both servers have).
FIELDS = {
    "PlanName": ("RTYP", "DESC"),
    "RunUid": ("RTYP", "DESC"),
    "PlanArgs": ("RTYP", "DESC", "FTVL", "NELM"),
    "PlanList": ("RTYP", "DESC", "FTVL", "NELM"),
    "Start": ("RTYP", "DESC", "ZNAM", "ONAM"),
    "Busy": ("RTYP", "DESC", "ZNAM", "ONAM"),
    "State": ("RTYP", "DESC", "ZRST", "ONST", "EIST"),
    "scan:motor": ("RTYP", "ZRST", "ONST", "SXST"),
    "ScanId": ("RTYP", "DESC"),
    "scan:num": ("RTYP", "DRVL", "DRVH", "HOPR", "LOPR"),
    "Progress": ("RTYP", "DESC", "EGU", "PREC", "HOPR", "LOPR", "MDEL", "ADEL"),
    "scan:start": ("RTYP", "PREC"),
}


class ReferenceIoc(ServerProcess):
    """EPICS base's softIoc serving the conformance database."""

    name = "softIoc"
    ready_suffix = "PlanName"
    stop_timeout = 10.0
    macros = ""

    def command(self) -> list[str]:
        return [find_softioc(), "-S", "-m", f"P={self.prefix},{self.macros}", "-d", str(DB)]


def _states(ca: CaTools, suffix: str) -> list[str]:
    out = ca.run("caget", "-d", "DBR_CTRL_ENUM", ca.pv(suffix)).stdout
    return re.findall(r"\[\s*\d+\] ?(.*)", out)


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, repeater_port: int
) -> Iterator[tuple[CaTools, CaTools]]:
    """The IOC (test profile) and a softIoc mirroring its PVs: (ioc tools, softIoc tools)."""
    tmp = tmp_path_factory.mktemp("conformance")
    port = _free_port()
    prefix = f"C{uuid.uuid4().hex[:8]}:"
    ioc = IOCProcess(
        prefix,
        port,
        loopback_env(port, repeater_port),
        tmp / "data",
        tmp / "ioc.log",
        ["--prefix", prefix, "--data-dir", str(tmp / "data"), "--profile", str(TEST_PROFILE)],
    )
    ref_port = _free_port()
    ref = ReferenceIoc(
        f"R{uuid.uuid4().hex[:8]}:", ref_port, loopback_env(ref_port, repeater_port), tmp / "r.log"
    )
    try:
        ioc.start()
        states = _states(ioc.ca, "scan:motor")
        ref.macros = ",".join(f"S{i}={s}" for i, s in enumerate(states))
        ref.start()
        yield ioc.ca, ref.ca
    finally:
        ref.stop()
        ioc.stop()


def _seen(ca: CaTools, *args: str) -> tuple[int, str]:
    """A tool's exit code and output, with the server's prefix written ``P:``."""
    result = ca.run(*args)
    text = (result.stdout + result.stderr).replace(ca.prefix, "P:")
    return result.returncode, text


def _blocks(text: str) -> dict[str, list[str]]:
    """``caget -d`` output split per PV, the PV name line dropped."""
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("P:"):
            current = blocks.setdefault(line.strip()[2:], [])
        else:
            current.append(line.rstrip())
    return blocks


def test_types_metadata_limits_and_enum_strings(servers: tuple[CaTools, CaTools]) -> None:
    """Native type, element count, units, precision, limits, enum strings, alarm: the same."""
    ioc, ref = servers
    for suffix, request in PVS.items():
        seen = {}
        for side in (ioc, ref):
            code, out = _seen(side, "caget", "-S", "-d", request, side.pv(suffix))
            assert code == 0, out
            seen[side is ioc] = _blocks(out)[suffix]
        mine, theirs = seen[True], seen[False]
        if suffix in ("PlanList", "ScanId"):  # the values differ (plans; scan ids on disk)
            mine = [line for line in mine if "Value:" not in line]
            theirs = [line for line in theirs if "Value:" not in line]
        if suffix in FORM_PVS:  # deliberate: SOFT for UDF
            mine = [line.replace("SOFT", "UDF") for line in mine]
        if request == "DBR_CTRL_DOUBLE" and suffix in ("ScanId", "scan:num"):
            pass  # (DBR_CTRL_LONG here: no NaN to differ on)
        assert mine == theirs, f"{suffix} ({request})"
    # longs as doubles: the same but for the alarm limits (deliberate: "long alarm limits")
    for suffix in ("ScanId", "scan:num"):
        outs = [
            _blocks(_seen(s, "caget", "-d", "DBR_CTRL_DOUBLE", s.pv(suffix))[1])[suffix]
            for s in servers
        ]
        mine, theirs = (
            [ln for ln in out if "alarm" not in ln and "warn" not in ln] for out in outs
        )
        if suffix == "ScanId":
            mine, theirs = ([ln for ln in out if "Value" not in ln] for out in (mine, theirs))
        assert [ln.replace("SOFT", "UDF") for ln in mine] == theirs, suffix


def test_fields_read_the_same(servers: tuple[CaTools, CaTools]) -> None:
    ioc, ref = servers
    for suffix, fields in FIELDS.items():
        names = [f"{suffix}.{field}" for field in fields]
        outs = [_seen(s, "caget", "-t", *[s.pv(n) for n in names]) for s in servers]
        assert outs[0] == outs[1], suffix
    # deliberate ("fields"): the IOC refuses a field put; softIoc takes it
    code_ioc, _ = _seen(ioc, "caput", "-c", ioc.pv("State.ZRST"), "IDLE")
    code_ref, _ = _seen(ref, "caput", "-c", ref.pv("State.ZRST"), "IDLE")
    assert (code_ioc, code_ref) == (1, 0)
    ref.put_ok("State.ZRST", "idle")


def test_puts_put_callback_and_gets(servers: tuple[CaTools, CaTools]) -> None:
    """The same puts (with put-callback) succeed or fail alike and read back alike."""
    ioc, ref = servers
    args = json.dumps({"detectors": ["det"], "num": 2})
    steps = [
        ("PlanName", "count", ()),
        ("PlanArgs", args, ("-S",)),
        ("Start", "0", ()),
        ("Start", "Done", ()),
        ("scan:motor", "motor1", ()),
        ("scan:motor", "3", ()),
        ("scan:motor", "motr", ()),  # caput itself refuses a string that is no state
        ("scan:num", "5", ()),
        ("scan:start", "1.5", ()),
        ("scan:start", "-2.25", ()),
    ]
    for suffix, value, flags in steps:
        outs = [_seen(s, "caput", "-c", "-w", "10", *flags, s.pv(suffix), value) for s in servers]
        assert outs[0] == outs[1], (suffix, value)
        values = [_seen(s, "caget", "-S", "-t", s.pv(suffix))[1] for s in servers]
        assert values[0] == values[1], (suffix, value)

    # deliberate differences, checked to be what the README says
    assert _seen(ioc, "caput", "-c", ioc.pv("scan:num"), "0")[0] == 1  # "out of range"
    assert _seen(ref, "caput", "-c", ref.pv("scan:num"), "0")[0] == 0
    assert ref.get("scan:num") == "1"  # softIoc clamps to DRVL
    assert _seen(ioc, "caput", "-c", ioc.pv("Start"), "2")[0] == 1  # "not a state"
    assert _seen(ref, "caput", "-c", ref.pv("Start"), "2")[0] == 0
    assert ref.get("Start") == "Illegal_Value"
    ref.put_ok("Start", 0)
    for suffix in ("Busy", "State", "ScanId", "Progress", "RunUid"):  # "inputs"
        assert _seen(ioc, "caput", "-c", ioc.pv(suffix), "0")[0] == 1, suffix
    # "refused put alarm": the refused put left WRITE/MAJOR; a good put clears it, on both
    assert ioc.get_alarm("scan:num") == ("MAJOR", "WRITE")
    for side in servers:
        side.put_ok("scan:num", 5)
        assert side.get_alarm("scan:num") == ("NO_ALARM", "NO_ALARM")

    # pyepics: the same values, metadata and put results
    def ops(ca: CaTools) -> list[dict[str, object]]:
        return [
            *({"op": "ctrl", "pv": ca.pv(s)} for s in PVS if s not in ("PlanList", "ScanId")),
            {"op": "put", "pv": ca.pv("scan:start"), "value": 0.5},
            {"op": "put", "pv": ca.pv("scan:motor"), "value": "motor2"},
            {"op": "put", "pv": ca.pv("PlanName"), "value": "count"},
            {"op": "get", "pv": ca.pv("scan:motor"), "as_string": True},
            {"op": "get", "pv": ca.pv("PlanArgs"), "as_string": True},
        ]

    mine, theirs = (pyepics(ca.env, ops(ca)) for ca in servers)
    for result in (mine, theirs):  # deliberate ("NUL"): softIoc counts caput -S's NUL
        plan_args = result[[s for s in PVS if s not in ("PlanList", "ScanId")].index("PlanArgs")]
        value = plan_args.pop("value")
        plan_args.pop("count")
        assert bytes(value).rstrip(b"\0").decode() == args
    for one, other in zip(mine, theirs, strict=True):
        assert one == other


def test_long_strings(servers: tuple[CaTools, CaTools]) -> None:
    """4095 bytes of text fit a 4096-character waveform, with the NUL; 4096 do not."""
    args = json.dumps({"detectors": ["det"], "num": 1})
    for size in (4095, 4096):
        text = args[:-1] + " " * (size - len(args)) + "}"
        outs = [_seen(s, "caput", "-c", "-S", s.pv("PlanArgs"), text)[0] for s in servers]
        assert outs[0] == outs[1] == (0 if size == 4095 else 1), size
        values = [_seen(s, "caget", "-S", "-t", s.pv("PlanArgs"))[1] for s in servers]
        assert values[0] == values[1]
        assert len(values[0].strip().replace('\\"', '"')) == 4095  # caget -S escapes quotes


def test_event_masks(servers: tuple[CaTools, CaTools]) -> None:
    """camonitor with each mask gets the same updates from both for the same puts."""
    watched = ("PlanName", "PlanArgs", "scan:num", "scan:start", "scan:motor", "scan:stop")
    monitors = {
        (side is servers[0], mask): side._background(
            "camonitor", "-m", mask, "-t", "n", "-S", *[side.pv(s) for s in watched]
        )
        for side in servers
        for mask in ("v", "a", "l", "p")
    }
    for tool in monitors.values():
        wait_until(lambda tool=tool: tool.output.count("\n") >= len(watched), 10, what="camonitor")
    args = json.dumps({"detectors": ["det"], "num": 3})
    for suffix, value, flags in [
        ("PlanName", "count", ()),
        ("PlanName", "count", ()),  # the same: stringout posts nothing
        ("PlanArgs", args, ("-S",)),
        ("PlanArgs", args, ("-S",)),  # the same: a waveform posts anyway
        ("scan:num", "5", ()),  # the same: longout (MDEL 0) posts nothing
        ("scan:num", "5", ()),
        ("scan:num", "6", ()),
        ("scan:start", "1.5", ()),
        ("scan:start", "1.5", ()),
        ("scan:motor", "motor1", ()),
        ("scan:motor", "motor1", ()),
        ("scan:motor", "motor2", ()),
        ("scan:stop", "2", ()),  # never put before: its alarm (unset) clears
        ("scan:stop", "2", ()),
        ("PlanName", "scan", ()),  # the last: monitors end once they show it (or not)
    ]:
        for side in servers:
            assert _seen(side, "caput", "-c", *flags, side.pv(suffix), value)[0] == 0
    outputs: dict[tuple[bool, str], dict[str, list[str]]] = {}
    for key, tool in monitors.items():
        mine, mask = key
        side = servers[0] if mine else servers[1]
        done = {
            "v": lambda o: re.search(r"PlanName +scan\b", o),
            "l": lambda o: re.search(r"PlanName +scan\b", o),
            "a": lambda o: re.search(r"scan:stop +2\b", o),
            "p": None,
        }[mask]
        text = tool.finish(done, timeout=10).replace(side.prefix, "P:")
        per_pv: dict[str, list[str]] = {}
        for line in text.splitlines():
            name, _, rest = line.partition(" ")
            per_pv.setdefault(name, []).append(" ".join(rest.replace("SOFT", "UDF").split()))
        outputs[key] = per_pv
    for mask in ("v", "a", "l", "p"):
        assert outputs[(True, mask)] == outputs[(False, mask)], mask
