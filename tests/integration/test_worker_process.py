"""The RunEngine lives in a worker process: whatever it does costs a restart, never the IOC.

Each test drives the IOC over real Channel Access while its worker process is killed, frozen,
bloated, or replaced by a Reload whose profile exits, raises or hangs. The IOC must stay up,
close the cut run with a stop document, say what happened (Status with a MAJOR alarm,
WorkerRestarts) and run the next plan.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.polling import wait_until

from .ca_tools import Background
from .conftest import IOCProcess
from .processes import alive, children, thread_count, worker_pids

FAULTS = Path(__file__).with_name("profile_worker_faults.py")
#: --worker-start-timeout for the hanging profile (seconds)
HANG_LIMIT_S = 20


def start_faulty_ioc(make_ioc, tmp_path: Path, *flags: str) -> tuple[IOCProcess, Path, Path]:  # type: ignore[no-untyped-def]
    pids, mode = tmp_path / "worker-pids", tmp_path / "profile-mode"
    ioc = make_ioc(
        *flags,
        profile=str(FAULTS),
        env={"RE_IOC_PROFILE_PIDS": str(pids), "RE_IOC_PROFILE_MODE": str(mode)},
    )
    return ioc, pids, mode


def last_document(path: Path) -> dict:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])


def assert_runs_a_plan(ioc: IOCProcess) -> None:
    ca = ioc.ca
    ca.configure("count", {"detectors": ["det"], "num": 3})
    ca.put_ok("Start", 1, timeout=60)
    assert ca.get_text("ExitStatus") == "success"
    assert ca.get_text("State") == "idle"


def assert_cut_run_closed(ioc: IOCProcess, status: Background, ca_status_has: str) -> None:
    """The plan ended as failed, its file ends with the IOC's stop document, Status said why
    with a MAJOR alarm, then that a new worker is ready."""
    ca = ioc.ca
    ca.wait_for("ExitStatus", "fail", timeout=30)
    ca.wait_for("State", "idle", timeout=30)
    ca.wait_for("WorkerRestarts", "1", timeout=30)
    ready = "worker ready again after restart 1"
    seen = status.finish(until=lambda out: ready in out, timeout=60)
    assert ready in seen, seen
    lines = [line for line in seen.splitlines() if "worker restarted (1 since start-up)" in line]
    assert len(lines) == 1, seen
    (line,) = lines
    assert ca_status_has in line and "MAJOR" in line, line
    (run,) = ioc.runs()
    stop = last_document(run)
    assert stop["name"] == "stop", stop
    assert stop["doc"]["exit_status"] == "fail" and ca_status_has in stop["doc"]["reason"]
    assert stop["doc"]["num_events"].get("primary", 0) >= 1


def test_a_worker_killed_mid_run_is_replaced_and_its_run_closed(make_ioc, tmp_path):
    ioc, pids, _ = start_faulty_ioc(make_ioc, tmp_path)
    assert ioc.proc is not None
    (first,) = worker_pids(pids)
    assert first != ioc.proc.pid  # the profile was loaded in the worker, not in the IOC
    assert children(ioc.proc.pid) == [first]
    ca = ioc.ca
    ca.configure("count", {"detectors": ["det"], "num": 10000, "delay": 0.02})
    status = ca.monitor("Status", text=True)
    start = ca.start_put("Start", 1)
    ca.wait_for("CurrentPoint", lambda v: int(v) >= 3)
    os.kill(first, signal.SIGKILL)
    start.wait(30)  # the pending Start completes: its plan has ended
    assert_cut_run_closed(ioc, status, "killed by SIGKILL")
    second = wait_until(lambda: worker_pids(pids)[1:], 60, what="a new worker")[0]
    assert ioc.proc.poll() is None and not alive(first)
    assert_runs_a_plan(ioc)
    assert children(ioc.proc.pid) == [second]
    assert ca.get_text("WorkerRestarts") == "1"


def test_a_frozen_worker_is_ended_after_the_worker_timeout(make_ioc, tmp_path):
    ioc, pids, _ = start_faulty_ioc(make_ioc, tmp_path, "--worker-timeout", "2")
    ca = ioc.ca
    ca.configure("freeze_worker", {"detectors": ["det"]})
    status = ca.monitor("Status", text=True)
    start = ca.start_put("Start", 1)
    assert_cut_run_closed(ioc, status, "did not answer for 2 s")
    start.wait(30)
    assert not alive(worker_pids(pids)[0]) and len(worker_pids(pids)) == 2
    assert_runs_a_plan(ioc)


def test_a_runaway_plan_costs_a_worker_restart_not_the_ioc(make_ioc, tmp_path):
    ioc, pids, _ = start_faulty_ioc(make_ioc, tmp_path, "--worker-memory-mb", "500")
    ca = ioc.ca
    ca.configure("eat_memory", {"detectors": ["det"], "mb_per_point": 40})
    status = ca.monitor("Status", text=True)
    start = ca.start_put("Start", 1)
    assert_cut_run_closed(ioc, status, "over its limit of 500 MB")
    start.wait(30)
    assert ioc.proc is not None and ioc.proc.poll() is None
    assert not alive(worker_pids(pids)[0]) and len(worker_pids(pids)) == 2
    assert_runs_a_plan(ioc)


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("exit", "called sys.exit(3)"),
        ("raise", "the profile broke on purpose"),
        ("hang", f"did not load within {HANG_LIMIT_S} s"),
    ],
)
def test_a_reload_whose_profile_fails_leaves_the_serving_worker_untouched(
    make_ioc, tmp_path, mode, said
):
    # the limit applies to the first load too: long enough for a start-up on a loaded machine
    ioc, pids, mode_file = start_faulty_ioc(
        make_ioc, tmp_path, "--worker-start-timeout", str(HANG_LIMIT_S)
    )
    assert ioc.proc is not None
    (first,) = worker_pids(pids)
    mode_file.write_text(mode)
    result = ioc.ca.put("Reload", 1, timeout=HANG_LIMIT_S + 30)
    assert not result.ok, result.stdout
    status = ioc.ca.get_text("Status")
    assert said in status and "the previous profile stays in service" in status, status
    loader = wait_until(lambda: worker_pids(pids)[1:], 10)[0]  # it did start, then
    wait_until(lambda: not alive(loader), 10, what="the failed loader to be ended")
    assert children(ioc.proc.pid) == [first] and ioc.ca.get_text("WorkerRestarts") == "0"
    assert_runs_a_plan(ioc)
    mode_file.write_text("ok")  # the profile mended: Reload swaps to a new worker
    ioc.ca.put_ok("Reload", 1, timeout=60)
    assert "reloaded" in ioc.ca.get_text("Status")
    wait_until(lambda: not alive(first), 20, what="the retired worker to exit")
    assert children(ioc.proc.pid) == [worker_pids(pids)[-1]]
    assert_runs_a_plan(ioc)


def test_reloads_leave_no_process_or_thread_behind(make_ioc, tmp_path):
    ioc, pids, _ = start_faulty_ioc(make_ioc, tmp_path)
    assert ioc.proc is not None
    for _ in range(3):  # the thread pool that runs blocking calls grows to its size
        ioc.ca.put_ok("Reload", 1, timeout=60)
    assert_runs_a_plan(ioc)
    threads = thread_count(ioc.proc.pid)
    for _ in range(8):
        ioc.ca.put_ok("Reload", 1, timeout=60)
    wait_until(lambda: len(children(ioc.proc.pid)) == 1, 30, what="one worker only")
    assert children(ioc.proc.pid) == [worker_pids(pids)[-1]]
    assert len(worker_pids(pids)) == 12
    assert all(not alive(pid) for pid in worker_pids(pids)[:-1])
    # the event loop's default thread pool may still grow to its bound (6 on 2 cores) under
    # load; a thread per Reload would be 8 more
    wait_until(lambda: thread_count(ioc.proc.pid) <= threads + 3, 20, what="no threads left")
    assert_runs_a_plan(ioc)


def test_a_queue_item_whose_worker_dies_is_interrupted_and_the_queue_stops(make_ioc, tmp_path):
    ioc, pids, _ = start_faulty_ioc(make_ioc, tmp_path)
    ca = ioc.ca
    long, after = "item-cut-by-the-kill", "item-after"
    slow = {"detectors": ["det"], "num": 10000, "delay": 0.02}
    ca.put_ok("Queue:Add", {"plan": "count", "args": slow, "uid": long}, string=True)
    short = {"detectors": ["det"], "num": 2}
    ca.put_ok("Queue:Add", {"plan": "count", "args": short, "uid": after}, string=True)
    queue = ca.start_put("Queue:Start", 1)
    status = ca.monitor("Status", text=True)
    ca.wait_for("CurrentPoint", lambda v: int(v) >= 3)
    os.kill(worker_pids(pids)[0], signal.SIGKILL)
    queue.wait(60)  # the queue stopped: its put completes
    assert ca.get("Queue:State") == "idle" and ca.get("Queue:State.SEVR") == "MINOR"
    ca.put_ok("Item:Uid", long)
    assert ca.get("Item:State") == "interrupted"
    (run,) = ioc.runs()
    assert json.loads(ca.get_text("Item:Runs")) == [last_document(run)["doc"]["run_start"]]
    assert [entry["uid"] for entry in json.loads(ca.get_text("Queue:Items"))] == [after]
    ready = "worker ready again after restart 1"
    assert ready in status.finish(until=lambda out: ready in out, timeout=60)
    ca.put_ok("Queue:Start", 1, timeout=60)  # the rest of the queue runs on the new worker
    ca.put_ok("Item:Uid", after)
    assert ca.get("Item:State") == "success"


def test_sinks_status_follows_the_reloaded_profile_and_dropped_documents_stay_counted(
    make_ioc, tmp_path
):
    ioc, _, mode_file = start_faulty_ioc(make_ioc, tmp_path)
    ca = ioc.ca
    none = "no sinks besides the local files"  # published on the first tick after start-up
    ca.wait_for("Sinks:Status", lambda _: ca.get_text("Sinks:Status") == none)
    mode_file.write_text("sink")
    ca.put_ok("Reload", 1, timeout=60)
    ca.wait_for("Sinks:Status", lambda _: "profile dropping_sink" in ca.get_text("Sinks:Status"))
    assert_runs_a_plan(ioc)  # its documents are dropped by the profile's sink, not the plan
    dropped = int(wait_until(lambda: int(ca.get("Sinks:Dropped")), 30, what="drops counted"))
    mode_file.write_text("ok")
    ca.put_ok("Reload", 1, timeout=60)
    ca.wait_for(
        "Sinks:Status", lambda _: ca.get_text("Sinks:Status") == "no sinks besides the local files"
    )
    assert int(ca.get("Sinks:Dropped")) >= dropped  # since the IOC started, not the worker
