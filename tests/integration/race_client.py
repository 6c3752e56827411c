"""One pyepics client that drives interrupt races many times (a CA tool per try is too slow).

Run as ``python race_client.py PREFIX MODE COMMANDS TRIES``; MODE is ``pause`` (the interrupt
0-10 ms after a Pause) or ``resume`` (0-10 ms after a Resume), COMMANDS e.g. ``Halt,Abort``.
Each try brings a plan to the race, sends the command with a put-callback at an offset spread
over 0-10 ms, then, like a second client, puts Start as soon as PlanCount says the plan ended
(the Start that may land before the interrupt's put has looked up the plan to wait for; it runs
the next try's plan). Prints one JSON line per try: what it saw, and how long the interrupt's
put took to complete.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import epics

TIMEOUT = 10.0
#: How long a try waits for the interrupt's put to complete once the next plan runs: ample for
#: the plan it interrupted (already ended), far shorter than the next plan.
PUT_WAIT = 3.0


class Watch:
    """A monitored PV's latest value, and a way to wait for one."""

    def __init__(self, name: str) -> None:
        self._changed = threading.Condition()
        self.value: Any = None
        self.history: list[str] = []
        self.pv = epics.PV(name, form="native", auto_monitor=True, callback=self._update)
        if not self.pv.wait_for_connection(timeout=TIMEOUT):
            raise SystemExit(f"{name} did not connect")
        self.value = self.pv.get(as_string=True)

    def _update(self, char_value: str = "", **kw: Any) -> None:
        with self._changed:
            self.value = char_value
            self.history.append(char_value)
            self._changed.notify_all()

    def went(self, since: int, *values: str) -> bool:
        """True if the updates from index ``since`` on took ``values`` in this order."""
        wanted = iter(values)
        target = next(wanted)
        for value in self.history[since:]:
            if value == target:
                target = next(wanted, None)  # type: ignore[arg-type]
                if target is None:
                    return True
        return False

    def wait(self, check: Any, timeout: float = TIMEOUT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: check(self.value), timeout)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main(prefix: str, mode: str, commands: list[str], tries: int) -> None:
    state, busy, count = (
        Watch(prefix + "State"),
        Watch(prefix + "Busy"),
        Watch(prefix + "PlanCount"),
    )
    exit_status, run_uid = Watch(prefix + "ExitStatus"), Watch(prefix + "RunUid")
    names = ("Start", "Pause", "Resume", *commands)
    puts = {name: epics.PV(prefix + name) for name in names}
    for pv in puts.values():
        pv.wait_for_connection(timeout=TIMEOUT)
    print(json.dumps({"ready": True}), flush=True)
    previous_uid = run_uid.value
    last = len(commands) * tries - 1
    for n in range(last + 1):
        command, i = commands[n // tries], n % tries
        offset = 0.010 * i / max(1, tries - 1)
        record: dict[str, Any] = {"command": command, "try": i, "offset": offset}
        began = time.monotonic()
        if n == 0:  # later plans were started by the try before
            puts["Start"].put(1, wait=False)
        opened = run_uid.wait(lambda v, p=previous_uid: v not in ("", p))
        if not opened or not state.wait(lambda v: v == "running"):
            record["error"] = (
                f"plan did not run: State {state.value}, Busy {busy.value}, "
                f"RunUid {run_uid.value!r} (before: {previous_uid!r})"
            )
            print(json.dumps(record), flush=True)
            return
        uid = previous_uid = run_uid.value
        record["running_after"] = time.monotonic() - began
        puts["Pause"].put(1, wait=True, timeout=TIMEOUT)
        if mode == "resume":
            if not state.wait(lambda v: v == "paused"):
                record["error"] = f"did not pause: State {state.value}"
                print(json.dumps(record), flush=True)
                return
            puts["Resume"].put(1, wait=True, timeout=TIMEOUT)
        record["raced_after"] = time.monotonic() - began
        spin(offset)
        ended_before = int(count.value)
        busy_since = len(busy.history)
        sent = time.monotonic()
        puts[command].put(1, wait=False, use_complete=True)
        # another client's Start, as soon as the plan has ended
        if not count.wait(lambda v, n=ended_before: int(v) > n):
            record["error"] = f"the plan did not end: State {state.value}, Busy {busy.value}"
            print(json.dumps(record), flush=True)
            return
        record["ended_after"] = time.monotonic() - sent
        record.update(run_uid=uid, exit_status=exit_status.value)
        if n < last:  # at once (PlanCount is published as the plan ends), until accepted
            for _ in range(50):
                puts["Start"].put(1, wait=False)
                if busy.wait(lambda v, k=busy_since: busy.went(k, "Idle", "Busy"), 0.02):
                    break
        deadline = time.monotonic() + PUT_WAIT
        while not puts[command].put_complete and time.monotonic() < deadline:
            time.sleep(0.001)
        record["put_completed_after"] = (
            time.monotonic() - sent if puts[command].put_complete else None
        )
        record["next_started"] = busy.went(busy_since, "Idle", "Busy")
        print(json.dumps(record), flush=True)
    # the last try's plan has ended; leave the IOC idle
    state.wait(lambda v: v == "idle")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]))
