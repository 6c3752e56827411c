"""Submit: plan, arguments and metadata in one put, so no other client can change what runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runengine_ioc.data.files import read_run

from .test_refusals import assert_refused

COUNT = {"detectors": ["det"], "num": 2}


def test_a_submit_runs_exactly_what_was_submitted_and_completes_when_it_ends(ioc):
    ioc.ca.put_ok("PlanName", "mv")  # whatever the selection holds is not what runs
    submission = {"plan": "count", "args": COUNT, "metadata": {"sample": "Si"}}
    assert ioc.ca.put("Submit", submission, string=True).ok
    assert ioc.ca.get("ExitStatus") == "success"  # the put completed when the plan ended
    start = read_run(ioc.runs()[-1])[0][1]
    assert start["plan_name"] == "count"
    assert start["num_points"] == 2
    assert start["sample"] == "Si"
    assert json.loads(ioc.ca.get_text("Submit")) == submission
    assert ioc.ca.get("PlanName") == "mv"  # the selection is untouched


@pytest.mark.parametrize(
    ("submission", "fragment"),
    [
        ('{"plan": "count", "args": {', "Submit is not valid JSON"),
        ('["count"]', "Submit must be a JSON object"),
        ('{"args": {}}', 'Submit needs "plan"'),
        ('{"plan": "count", "arg": {}}', "unknown key(s): arg"),
        ('{"plan": "launch_rocket"}', "unknown plan 'launch_rocket'"),
        ('{"plan": "count", "args": {"detectors": ["detx"]}}', "unknown device 'detx'"),
        ('{"plan": "count", "args": [1]}', '"args" must be a JSON object'),
        ('{"plan": "count", "args": {"detectors": ["det"]}, "metadata": {"uid": "x"}}', "uid"),
        ('{"plan": "count", "args": {"detectors": ["det"], "delay": NaN}}', "NaN is not a number"),
        (
            '{"plan": "count", "args": {"detectors": ["det"]}, "metadata": {"profile": "x"}}',
            "profile",
        ),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "no-plan",
        "unknown-key",
        "unknown-plan",
        "unknown-device",
        "args-not-object",
        "reserved-metadata",
        "nan",
        "profile-metadata-key",
    ],
)
def test_a_bad_submission_is_refused_and_nothing_runs(ioc, submission, fragment):
    result = ioc.ca.put("Submit", submission, string=True)
    assert_refused(ioc, result, "Submit: ")
    assert fragment in ioc.ca.get_text("Status")
    assert ioc.runs() == []


HIJACKER = """
import sys, time, epics
prefix, seconds = sys.argv[1], float(sys.argv[2])
name, args = epics.PV(prefix + "PlanName"), epics.PV(prefix + "PlanArgs")
assert name.wait_for_connection(10) and args.wait_for_connection(10)
hostile = '{"motor": "motor1", "position": 12345}'
end = time.monotonic() + seconds
puts = 0
while time.monotonic() < end:
    name.put("mv", wait=True)
    args.put(hostile, wait=True)
    puts += 2
print(puts)
"""

SUBMITTER = """
import json, sys, epics
prefix, rounds = sys.argv[1], int(sys.argv[2])
submit = epics.PV(prefix + "Submit")
exit_status = epics.PV(prefix + "ExitStatus")
assert submit.wait_for_connection(10) and exit_status.wait_for_connection(10)
failed = 0
for i in range(rounds):
    body = {"plan": "count", "args": {"detectors": ["det"], "num": 1 + i % 3},
            "metadata": {"round": i}}
    submit.put(json.dumps(body), wait=True, timeout=60)
    failed += exit_status.get(as_string=True, use_monitor=False) != "success"
print(failed)
"""


@pytest.mark.timeout(300)
def test_submit_under_concurrent_edits_of_the_selection_runs_what_was_submitted(ioc):
    rounds = 100
    hijacker = subprocess.Popen(
        [sys.executable, "-c", HIJACKER, ioc.prefix, "600"],
        env=ioc.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        submitter = subprocess.run(
            [sys.executable, "-c", SUBMITTER, ioc.prefix, str(rounds)],
            env=ioc.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        hijacker.terminate()
        hijacker.communicate(timeout=10)
    assert submitter.returncode == 0, submitter.stdout + submitter.stderr
    assert submitter.stdout.strip().splitlines()[-1] == "0"  # every submission succeeded
    assert ioc.ca.get("PlanName") == "mv"  # the hijacker was busy all along
    starts = [read_run(path)[0][1] for path in ioc.runs()]
    assert len(starts) == rounds
    for i, start in enumerate(sorted(starts, key=lambda s: s["round"])):
        assert start["round"] == i
        assert start["plan_name"] == "count"
        assert start["num_points"] == 1 + i % 3
