"""What the plan queue costs per item: the gap between one item's stop and the next's start.

``python -m benchmarks.queue [--items 1000]`` (about a minute): starts an IOC on the embedded
sim profile (loopback, free port, its own caRepeater and data directory), queues ``--items``
``count(det, num=1)`` items through ``Queue:Add`` (pyepics), starts the queue with a put
callback and waits for it to stop, then reads the run files: for each pair of consecutive
items, the time from the first one's stop document to the second one's start document (the
documents' own ``time`` stamps, both taken by the RunEngine). That gap is everything the
queue adds between items: the plan's end published on the event loop, the history entry and
the next item's start written in one SQLite transaction, the item checked again and
submitted, the RunEngine opening the next run. The goal is <= 5 ms (median).

For comparison, the same plans are then run back to back with ``Submit`` (a put with callback
each, the next put as soon as the previous completed): the same gap for a script driving the
IOC directly, which includes a Channel Access round trip to the client.

Last (unless ``--no-queueserver``), the same queue in bluesky-queueserver: ``--qs-items``
items (default 100; it takes about half a second an item) added with ``item_add_batch`` and
started with ``queue_start``, its gaps read the same way from its run files (the IOC has been
ended by then).

Every process started here is ended by its PID.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.polling import wait_until

from .procs import EPICS_BIN, free_port, loopback_env

GOAL_MS = 5.0


def documents(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The start and stop documents of a run file."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    start = lines[0]["doc"]
    stop = lines[-1]["doc"] if lines[-1]["name"] == "stop" else None
    return start, stop


def gaps_ms(data_dir: Path, queued: bool | None) -> list[float]:
    """Stop of run i to start of run i+1, in ms, in the order they ran: the queue's items
    (``queued``), the plans submitted directly, or (None) every run in the directory."""
    runs = sorted(
        (
            r
            for r in map(documents, data_dir.glob("*.jsonl"))
            if queued is None or ("queue_item_uid" in r[0]) == queued
        ),
        key=lambda r: r[0]["time"],
    )
    gaps = []
    for (_, stop), (start, _) in itertools.pairwise(runs):
        if stop is not None:
            gaps.append((start["time"] - stop["time"]) * 1000)
    return gaps


def queueserver_gaps(items: int, work: Path) -> dict[str, Any]:
    """The same queue in bluesky-queueserver: ``items`` count(det, num=1) queued with
    ``item_add_batch``, ``queue_start``; gaps from its run files, as for the IOC."""
    from .procs import Processes
    from .queueserver import QueueServer

    procs = Processes()
    try:
        qs = QueueServer(procs, work, "queue")
        qs.start()
        timing = qs.run_queue(items)
        qs.stop()
        gaps = sorted(gaps_ms(qs.data_dir, queued=None))
        return {
            "qs_queue_s": timing["queue_s"],
            "qs_gap_ms_median": statistics.median(gaps),
            "qs_gap_ms_p90": gaps[int(0.9 * (len(gaps) - 1))],
            "qs_gap_ms_min": gaps[0],
            "qs_gap_ms_max": gaps[-1],
            "qs_items": items,
        }
    finally:
        procs.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument(
        "--no-queueserver",
        action="store_true",
        help="skip the same queue in bluesky-queueserver (run after the IOC's)",
    )
    parser.add_argument(
        "--qs-items",
        type=int,
        default=100,
        help="items in the queueserver's queue (default 100: it takes about 0.5 s an item)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    port, repeater = free_port(), free_port()
    env = loopback_env(port, repeater)
    os.environ.update(env)  # pyepics reads its settings when it is imported
    import epics

    prefix = f"QB{uuid.uuid4().hex[:6]}:"
    started: list[subprocess.Popen[bytes]] = []
    log = open(work / "ioc.log", "wb")  # noqa: SIM115 - closed below
    try:
        started.append(subprocess.Popen([str(EPICS_BIN / "caRepeater")], env=env))
        ioc = subprocess.Popen(
            [sys.executable, "-m", "runengine_ioc.cli", "--prefix", prefix, "--data-dir",
             str(work / "data"), "-q"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(ioc)
        state = epics.PV(prefix + "Queue:State")
        wait_until(lambda: state.wait_for_connection(0.5), 60, what="the IOC")
        add = epics.PV(prefix + "Queue:Add")
        add.wait_for_connection(5)
        item = json.dumps({"plan": "count", "args": {"detectors": ["det"], "num": 1}})
        began = time.perf_counter()
        for _ in range(args.items):
            add.put(item, wait=True, timeout=10)
        adding = time.perf_counter() - began
        count = epics.caget(prefix + "Queue:Count")
        assert count == args.items, f"queued {count} of {args.items}"
        began = time.perf_counter()
        epics.caput(prefix + "Queue:Start", 1, wait=True, timeout=3600)
        running = time.perf_counter() - began
        history = epics.caget(prefix + "History:Count")
        submit = epics.PV(prefix + "Submit")
        submit.wait_for_connection(5)
        began = time.perf_counter()
        for _ in range(args.items):
            submit.put(item, wait=True, timeout=60)
        submitting = time.perf_counter() - began
        direct = sorted(gaps_ms(work / "data", queued=False))
        gaps = sorted(gaps_ms(work / "data", queued=True))
        median = statistics.median(gaps)
        result = {
            "items": args.items,
            "history_count": history,
            "add_ms_per_item": adding / args.items * 1000,
            "queue_s": running,
            "s_per_item": running / args.items,
            "gap_ms_median": median,
            "gap_ms_p90": gaps[int(0.9 * (len(gaps) - 1))],
            "gap_ms_p99": gaps[int(0.99 * (len(gaps) - 1))],
            "gap_ms_min": gaps[0],
            "gap_ms_max": gaps[-1],
            "submit_s_per_plan": submitting / args.items,
            "submit_gap_ms_median": statistics.median(direct),
            "submit_gap_ms_p90": direct[int(0.9 * (len(direct) - 1))],
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
            "goal_ms": GOAL_MS,
            "met": median <= GOAL_MS,
        }
        if not args.no_queueserver:  # with the IOC ended, so that it takes no CPU meanwhile
            ioc.terminate()
            ioc.wait(15)
            result.update(queueserver_gaps(args.qs_items, work))
        print(json.dumps(result, indent=1))
        return 0 if result["met"] else 1
    finally:
        epics.ca.finalize_libca()
        for proc in reversed(started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
