"""The README's example session, verbatim, over real Channel Access."""

from __future__ import annotations

import json

from runengine_ioc.data.files import read_run

README_ARGS = '{"detectors": ["det"], "motor": "motor", "start": -1, "stop": 1, "num": 11}'

PV_TABLE = [
    "PlanName",
    "PlanArgs",
    "Metadata",
    "Start",
    "Pause",
    "PauseDeferred",
    "Resume",
    "Stop",
    "Abort",
    "Halt",
    "State",
    "Status",
    "ExitStatus",
    "ScanId",
    "RunUid",
    "CurrentPoint",
    "TotalPoints",
    "Progress",
    "ElapsedTime",
    "RemainingTime",
    "PlanList",
    "DeviceList",
    "Busy",
    "PlanDoc",
    "PlanCount",
]


def test_readme_session_runs_a_scan_and_saves_it(make_ioc):
    ioc = make_ioc(profile=None)  # the embedded default profile
    ca = ioc.ca
    assert "scan" in ca.get_list("PlanList")
    assert {"det", "motor"} <= set(ca.get_list("DeviceList"))

    assert ca.put("PlanName", "scan").ok
    assert ca.put("PlanArgs", README_ARGS, string=True).ok
    start = ca.put("Start", 1, timeout=600)
    assert start.ok, start.stdout + start.stderr
    # caput -c returned only when the plan had ended
    assert ca.get("State") == "idle"
    assert ca.get("Start") == "Done"
    assert ca.get("ExitStatus") == "success"
    assert ca.get("ScanId") == "1"
    uid = ca.get("RunUid")

    [run_file] = ioc.runs()
    documents = read_run(run_file)
    names = [name for name, _ in documents]
    assert names[0] == "start" and names[-1] == "stop"
    start_doc, stop_doc = documents[0][1], documents[-1][1]
    assert start_doc["uid"] == uid
    assert start_doc["plan_name"] == "scan"
    assert stop_doc["exit_status"] == "success"
    assert names.count("event") == 11
    assert ca.get("CurrentPoint") == "11"
    assert ca.get("TotalPoints") == "11"
    assert float(ca.get("Progress")) == 100.0
    assert float(ca.get("RemainingTime")) == 0.0
    assert uid[:8] in ca.get_text("Status")


def test_every_pv_is_a_record_with_a_description(ioc):
    for suffix in PV_TABLE:
        desc = ioc.ca.get(f"{suffix}.DESC")
        assert desc, f"{suffix} has no DESC"
        assert ioc.ca.get(f"{suffix}.SEVR") == "NO_ALARM", suffix
        assert ioc.ca.get(f"{suffix}.STAT") == "NO_ALARM", suffix
    assert ioc.ca.get("Progress.EGU") == "%"
    assert ioc.ca.get("ElapsedTime.EGU") == "s"
    states = [
        ioc.ca.get(f"State.{f}")
        for f in ("ZRST", "ONST", "TWST", "THST", "FRST", "FVST", "SXST", "SVST", "EIST")
    ]
    assert states == [
        "idle",
        "running",
        "pausing",
        "paused",
        "halting",
        "stopping",
        "aborting",
        "suspending",
        "panicked",
    ]


def test_metadata_is_merged_into_the_start_document(ioc):
    ioc.ca.configure(
        "count", {"detectors": ["det1", "det2"], "num": 3}, {"sample": "LaB6", "operator": "ana"}
    )
    assert ioc.ca.put("Start", 1).ok
    start_doc = read_run(ioc.runs()[-1])[0][1]
    assert start_doc["sample"] == "LaB6"
    assert start_doc["operator"] == "ana"
    assert start_doc["profile"] == "tests"
    assert start_doc["num_points"] == 3
    assert json.loads(ioc.ca.get_text("PlanArgs")) == {"detectors": ["det1", "det2"], "num": 3}
