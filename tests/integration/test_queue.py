"""The plan queue over real Channel Access: items, control, history, lookups, persistence.

Each test starts its own IOC (random prefix and port, own data directory) on the test
profile, which has a ``fail_after`` plan, and drives it with caget/caput.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_until

from .ca_tools import CaTools

COUNT = {"detectors": ["det"], "num": 1}
SLOW = {"detectors": ["det"], "num": 30, "delay": 0.1}  # about 3 s


def item(plan: str = "count", args: dict[str, Any] | None = None, **extra: Any) -> dict:
    return {"plan": plan, "args": COUNT if args is None else args, **extra}


def add(ioc, plan: str = "count", args: dict[str, Any] | None = None, **extra: Any) -> str:  # type: ignore[no-untyped-def]
    """Queue:Add with a uid of our own (so the test knows it); returns the uid."""
    uid = extra.pop("uid", None) or str(uuid.uuid4())
    ioc.ca.put_ok("Queue:Add", item(plan, args, uid=uid, **extra), string=True)
    return uid


def items(ioc) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(ioc.ca.get_text("Queue:Items"))


def history(ioc) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(ioc.ca.get_text("History"))


def uids(ioc) -> list[str]:  # type: ignore[no-untyped-def]
    return [entry["uid"] for entry in items(ioc)]


def item_state(ioc, uid: str) -> str:  # type: ignore[no-untyped-def]
    ioc.ca.put_ok("Item:Uid", uid)
    return ioc.ca.get("Item:State")


def wait_idle(ioc, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    ioc.ca.wait_for("Queue:State", "idle", timeout=timeout)


def test_add_move_remove_clear_and_who_added(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    first = add(ioc)
    second = add(
        ioc, "scan", {"detectors": ["det"], "motor": "motor", "start": 0, "stop": 1, "num": 3}
    )
    third = add(ioc, metadata={"sample": "Si"})
    assert uids(ioc) == [first, second, third]
    assert ca.get("Queue:Count") == "3"
    assert ca.get("Queue:Added") == third
    entry = items(ioc)[2]
    assert entry["metadata"] == {"sample": "Si"}
    assert entry["user"] and entry["host"]  # the caput client's claimed identity

    ca.put_ok("Queue:Move", {"item": third, "to": 0}, string=True)
    assert uids(ioc) == [third, first, second]
    ca.put_ok("Queue:Move", "0 -1", string=True)  # by position: first to last
    assert uids(ioc) == [first, second, third]

    ca.put_ok("Queue:Remove", second)
    assert uids(ioc) == [first, third]
    ca.put_ok("Queue:Remove", "-1")
    assert uids(ioc) == [first]

    # AddSelection: what PlanName/PlanArgs/Metadata hold now
    ca.configure("count", {"detectors": ["det"], "num": 2}, {"operator": "me"})
    ca.put_ok("Queue:AddSelection", 1)
    selected = items(ioc)[-1]
    assert (selected["plan"], selected["args"]["num"], selected["metadata"]) == (
        "count",
        2,
        {"operator": "me"},
    )
    ca.put_ok("Queue:Clear", 1)
    assert items(ioc) == [] and ca.get("Queue:Count") == "0"
    assert item_state(ioc, first) == "unknown"  # removed, never ran


REFUSED_ADDS = [
    ({"plan": "nope"}, "unknown plan"),
    ({"plan": "count", "args": {"detectors": ["det"], "num": "ten"}}, "num"),
    ({"plan": "count", "args": COUNT, "metadata": {"uid": "x"}}, "uid"),
    ({"plan": "count", "args": COUNT, "metadata": {"queue_item_uid": "x"}}, "queue"),
    ({"plan": "count", "args": COUNT, "colour": 1}, "unknown key"),
    ({"plan": "count", "args": COUNT, "uid": "has space"}, "uid"),
    ("[1, 2]", "JSON object"),
]


def test_a_refused_add_fails_the_put_and_says_why(ioc) -> None:  # type: ignore[no-untyped-def]
    for request, why in REFUSED_ADDS:
        result = ioc.ca.put("Queue:Add", request, string=True)
        assert not result.ok, request
        status = ioc.ca.get_text("Status")
        assert "Queue:Add" in status and why in status, status
    assert items(ioc) == []
    assert ioc.ca.get("Queue:Count") == "0"


def test_a_uid_is_used_once(ioc) -> None:  # type: ignore[no-untyped-def]
    uid = add(ioc)
    assert not ioc.ca.put("Queue:Add", item(uid=uid), string=True).ok
    assert "already used" in ioc.ca.get_text("Status")
    assert uids(ioc) == [uid]


def test_the_queue_runs_items_in_order_and_start_completes_when_it_stops(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    added = [add(ioc) for _ in range(3)]
    ca.put_ok("Queue:Start", 1, timeout=60)  # put-callback: returns when the queue stopped
    assert ca.get("Queue:State") == "idle"
    assert items(ioc) == []
    ran = history(ioc)
    assert [entry["uid"] for entry in ran] == added
    assert all(entry["state"] == "success" for entry in ran)
    assert all(len(entry["run_uids"]) == 1 and entry["scan_ids"] for entry in ran)
    scan_ids = [entry["scan_ids"][0] for entry in ran]
    assert scan_ids == sorted(scan_ids) and len(set(scan_ids)) == 3
    assert all(entry["started"] <= entry["ended"] for entry in ran)
    assert ca.get("History:Count") == "3"
    # each run's start document names its item
    starts = [json.loads(path.read_text().splitlines()[0])["doc"] for path in ioc.runs()]
    assert sorted(doc["queue_item_uid"] for doc in starts) == sorted(added)
    ca.put_ok("History:Clear", 1)
    assert history(ioc) == [] and ca.get("History:Count") == "0"


def test_item_state_through_each_transition_and_runs(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    slow = add(ioc, args=SLOW)
    ca.put_ok("Item:Uid", slow)
    assert ca.get("Item:State") == "queued"
    assert json.loads(ca.get_text("Item:Runs")) == []
    pending = ca.start_put("Queue:Start", 1)
    ca.wait_for("Item:State", "running")  # Item:State follows the item without a new put
    assert ca.get("Queue:Running") == slow
    assert ca.get("Queue:State") == "running"
    ca.put_ok("Queue:Pause", 1)
    ca.wait_for("Queue:State", "paused")
    ca.put_ok("Queue:Resume", 1)
    ca.wait_for("Queue:State", "running")
    ca.wait_for("Item:State", "success", timeout=30)
    assert pending.wait(30) == 0
    runs = json.loads(ca.get_text("Item:Runs"))
    assert len(runs) == 1 and runs[0] in ioc.runs()[-1].read_text()
    info = json.loads(ca.get_text("Item:Info"))
    assert info["uid"] == slow and info["state"] == "success"
    assert ca.get("Queue:Running") == ""
    assert item_state(ioc, "no-such-item") == "unknown"


def test_stop_after_the_current_item(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    slow = add(ioc, args=SLOW)
    rest = [add(ioc), add(ioc)]
    pending = ca.start_put("Queue:Start", 1)
    ca.put_ok("Item:Uid", slow)
    ca.wait_for("Item:State", "running")
    ca.put_ok("Queue:Stop", 1)
    assert ca.get("Queue:State") == "stopping"
    assert pending.wait(30) == 0  # Start's put completes once the queue stopped
    assert ca.get("Queue:State") == "idle"
    assert ca.get("Queue:State.SEVR") == "NO_ALARM"
    assert ca.get("Item:State") == "success"  # the current item ended normally
    assert uids(ioc) == rest  # and nothing else ran
    assert [entry["uid"] for entry in history(ioc)] == [slow]


def test_on_failure_stop_stops_the_queue_with_a_minor_alarm(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    assert ca.get("Queue:OnFailure") == "stop"
    failing = add(ioc, "fail_after", {"detectors": ["det"], "points": 1})
    after = add(ioc)
    ca.put_ok("Queue:Start", 1, timeout=60)
    assert ca.get("Queue:State") == "idle"
    assert ca.get("Queue:State.SEVR") == "MINOR"
    assert uids(ioc) == [after]
    (entry,) = history(ioc)
    assert entry["uid"] == failing and entry["state"] == "fail"
    assert "simulated failure" in entry["message"]
    assert len(entry["run_uids"]) == 1
    assert failing in ca.get_text("Status")
    # the next start clears the alarm
    ca.put_ok("Queue:Start", 1, timeout=60)
    assert ca.get("Queue:State.SEVR") == "NO_ALARM"
    assert [e["state"] for e in history(ioc)] == ["fail", "success"]


def test_on_failure_continue_records_the_failure_and_goes_on(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    ca.put_ok("Queue:OnFailure", "continue")
    failing = add(ioc, "fail_after", {"detectors": ["det"], "points": 1})
    # refused when it runs, not when added: the registry is the same, so use a device
    after = add(ioc)
    ca.put_ok("Queue:Start", 1, timeout=60)
    assert items(ioc) == []
    assert [(e["uid"], e["state"]) for e in history(ioc)] == [
        (failing, "fail"),
        (after, "success"),
    ]
    assert ca.get("Queue:State.SEVR") == "NO_ALARM"
    assert item_state(ioc, failing) == "fail"


def test_history_after_an_aborted_run(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    slow = add(ioc, args=SLOW)
    after = add(ioc)
    pending = ca.start_put("Queue:Start", 1)
    ca.put_ok("Item:Uid", slow)
    ca.wait_for("Item:State", "running")
    ca.wait_for("CurrentPoint", lambda v: int(v) >= 1)
    ca.put_ok("Abort", 1)
    assert pending.wait(30) == 0
    (entry,) = history(ioc)
    assert (entry["uid"], entry["state"]) == (slow, "abort")
    assert len(entry["run_uids"]) == 1 and entry["ended"] >= entry["started"] > 0
    assert ca.get("Item:State") == "abort"
    assert uids(ioc) == [after]  # an abort stops the queue
    assert ca.get("Queue:State.SEVR") == "MINOR"


def test_direct_start_and_submit_refused_while_the_queue_runs(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    ca.configure("count", COUNT)
    ca.put_ok("Start", 1)  # works while the queue is stopped
    add(ioc, args=SLOW)
    before = len(ioc.runs())
    pending = ca.start_put("Queue:Start", 1)
    ca.wait_for("Queue:State", "running")
    result = ca.put("Start", 1, timeout=10)
    assert not result.ok
    assert "queue is running" in ca.get_text("Status")
    result = ca.put("Submit", item(), string=True, timeout=10)
    assert not result.ok
    assert "queue is running" in ca.get_text("Status")
    assert not ca.put("count:Start", 1, timeout=10).ok
    # a second Queue:Start is refused too
    assert not ca.put("Queue:Start", 1, timeout=10).ok
    assert pending.wait(30) == 0
    assert len(ioc.runs()) == before + 1
    ca.put_ok("Submit", item(), string=True, timeout=30)  # works again once it stopped


def test_run_now_puts_an_item_next(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    slow = add(ioc, args=SLOW)
    queued = [add(ioc), add(ioc)]
    pending = ca.start_put("Queue:Start", 1)
    ca.put_ok("Item:Uid", slow)
    ca.wait_for("Item:State", "running")
    urgent = str(uuid.uuid4())
    ca.put_ok("Queue:RunNow", item(uid=urgent), string=True)  # JSON: a new item, next
    ca.put_ok("Queue:RunNow", queued[1], string=True)  # a uid: moved to the front
    assert uids(ioc) == [queued[1], urgent, queued[0]]
    assert pending.wait(60) == 0
    assert [e["uid"] for e in history(ioc)] == [slow, queued[1], urgent, queued[0]]
    # while the queue is stopped, RunNow runs that one item, then the queue stops again
    later = [add(ioc), add(ioc)]
    ca.put_ok("Queue:RunNow", later[1], string=True)
    ca.put_ok("Item:Uid", later[1])
    ca.wait_for("Item:State", "success")
    wait_idle(ioc)
    assert uids(ioc) == [later[0]]


def test_a_form_queue_button_and_loop_mode(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    ca.put_ok("count:detectors", "det", string=True)
    ca.put_ok("count:num", 2)
    ca.put_ok("count:Queue", 1)
    (entry,) = items(ioc)
    assert (entry["plan"], entry["args"]["num"]) == ("count", 2)
    ca.put_ok("Queue:Loop", 1)
    pending = ca.start_put("Queue:Start", 1)
    wait_until(lambda: len(history(ioc)) >= 3, 60, what="three loops")
    ca.put_ok("Queue:Stop", 1)
    assert pending.wait(30) == 0
    assert len(items(ioc)) == 1  # the loop put it back each time
    assert items(ioc)[0]["uid"] not in {e["uid"] for e in history(ioc)}


def test_autostart_starts_when_an_item_is_added(ioc) -> None:  # type: ignore[no-untyped-def]
    ca = ioc.ca
    ca.put_ok("Queue:Autostart", 1)
    uid = add(ioc)
    ca.put_ok("Item:Uid", uid)
    ca.wait_for("Item:State", "success")
    wait_idle(ioc)
    assert ca.get("Queue:Autostart") == "On"


def test_two_iocs_side_by_side(make_ioc, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One plan per RunEngine: two IOCs, two prefixes, two ports, two queues running at once,
    reached by one client environment that lists both servers (README's recipe)."""
    first, second = make_ioc(), make_ioc()
    assert first.port != second.port and first.data_dir != second.data_dir
    env = dict(
        first.env,
        EPICS_CA_ADDR_LIST=f"127.0.0.1:{first.port} 127.0.0.1:{second.port}",
        EPICS_CA_AUTO_ADDR_LIST="NO",
    )
    tools = [CaTools(env, first.prefix), CaTools(env, second.prefix)]
    try:
        queued = {}
        for ioc, ca in zip((first, second), tools, strict=True):
            queued[ioc.prefix] = [str(uuid.uuid4()) for _ in range(2)]
            for uid in queued[ioc.prefix]:
                ca.put_ok("Queue:Add", item(args=SLOW, uid=uid), string=True)
        pending = [ca.start_put("Queue:Start", 1) for ca in tools]

        def both_running() -> bool:
            return all(ca.try_get("Queue:State") == "running" for ca in tools)

        wait_until(both_running, 30, what="both queues running at once")
        assert all(p.wait(60) == 0 for p in pending)
        for ioc, ca in zip((first, second), tools, strict=True):
            ran = json.loads(ca.get_text("History"))
            assert [e["uid"] for e in ran] == queued[ioc.prefix]  # its own items only
            assert all(e["state"] == "success" for e in ran)
            assert len(ioc.runs()) == 2
    finally:
        for ca in tools:
            ca.close()


def test_the_plan_policy_applies_to_who_adds(make_ioc, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With --policy, an item is checked for the client that adds it (the runner has none)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "user_groups:\n  users:\n    allowed_plans: ['^count$']\n"
        "    allowed_devices: ['^det$']\nmembers:\n  users: ['*']\n"
    )
    ioc = make_ioc("--policy", str(policy))
    refused = ioc.ca.put("Queue:Add", item("fail_after", {"detectors": ["det"]}), string=True)
    assert not refused.ok
    assert "not in allowed_plans" in ioc.ca.get_text("Status")
    ioc.ca.put_ok("count:detectors", "det", string=True)
    ioc.ca.put_ok("count:Queue", 1)  # a form's Queue button: the same check
    uid = add(ioc)
    assert len(uids(ioc)) == 2 and uids(ioc)[1] == uid


def _database(data_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Read straight from the store of a killed IOC: state by uid, queued uids in order."""
    with closing(sqlite3.connect(data_dir / "queue.sqlite")) as db:
        states = dict(db.execute("SELECT uid, state FROM items").fetchall())
        queued = [
            row[0]
            for row in db.execute(
                "SELECT uid FROM items WHERE state = 'queued' ORDER BY position"
            ).fetchall()
        ]
    return states, queued


def _runs_by_item(data_dir: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(data_dir.glob("*.jsonl")):
        try:
            start = json.loads(path.read_text().splitlines()[0])["doc"]
        except (IndexError, ValueError):  # cut short by the kill before its first line
            continue
        found.setdefault(start.get("queue_item_uid", ""), []).append(start["uid"])
    return found


class Adder:
    """Adds items in a thread, as fast as caput goes; remembers the acknowledged ones."""

    def __init__(self, ca: CaTools) -> None:
        self.ca = ca
        self.acknowledged: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            uid = str(uuid.uuid4())
            result = self.ca.put("Queue:Add", item(args=SHORT, uid=uid), string=True, timeout=5)
            if result.ok:
                self.acknowledged.append(uid)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(20)


SHORT = {"detectors": ["det"], "num": 4, "delay": 0.05}


def _check_restart(ioc, data_dir: Path, was_running: list[str]) -> int:  # type: ignore[no-untyped-def]
    """After a kill: the queue did not start by itself; the item a kill caught running is
    interrupted (not run again) with the runs its files show. How many were checked."""
    ca = ioc.ca
    assert ca.get("Queue:State") == "idle"
    for uid in was_running:
        ca.put_ok("Item:Uid", uid)
        assert ca.get("Item:State") == "interrupted"
        runs = json.loads(ca.get_text("Item:Runs"))
        assert runs == _runs_by_item(data_dir).get(uid, [])
    return len(was_running)


#: 4 x 5 SIGKILLs; each restart of the IOC takes a second or two (much more on a loaded
#: machine), so the kills are spread over four tests that can run in parallel.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_while_items_run_and_are_added_loses_nothing(make_ioc, tmp_path, seed) -> None:  # type: ignore[no-untyped-def]
    """SIGKILLs at random moments while one client adds items and the queue runs them: every
    acknowledged add survives, no item runs twice, the item that was running is marked
    interrupted (with its run uid) and the queue does not start by itself."""
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    prefix = f"K{uuid.uuid4().hex[:8]}:"
    acknowledged: list[str] = []
    was_running: list[str] = []
    interrupted_checked = 0
    for cycle in range(5):
        ioc = make_ioc(data_dir=data_dir, prefix=prefix)
        interrupted_checked += _check_restart(ioc, data_dir, was_running)
        adder = Adder(ioc.ca)
        wait_until(lambda a=adder: a.acknowledged, 30, what="a first add")
        ioc.ca.start_put("Queue:Start", 1)
        # a random moment: 0.2-1.7 s into adding and running (the moment is the test's input)
        time.sleep(rng.uniform(0.2, 1.7))
        ioc.kill()
        adder.stop()
        acknowledged += adder.acknowledged
        states, _ = _database(data_dir)
        lost = [uid for uid in acknowledged if uid not in states]
        assert not lost, f"cycle {cycle}: acknowledged adds lost: {lost}"
        was_running = [uid for uid, state in states.items() if state == "running"]
        assert len(was_running) <= 1
        runs = _runs_by_item(data_dir)
        twice = {uid: r for uid, r in runs.items() if uid and len(r) > 1}
        assert not twice, f"cycle {cycle}: items run twice: {twice}"
        started_unnoted = [
            uid for uid, state in states.items() if uid in runs and state == "queued"
        ]
        # a run file belongs to an item that left the queue, or to the one item the worker
        # started ahead of its turn (handed over) before the IOC noted it: the restart must
        # mark that one interrupted
        assert len(started_unnoted) <= 1, f"{started_unnoted} ran but are still queued"
        was_running += started_unnoted
    interrupted_checked += _check_restart(
        make_ioc(data_dir=data_dir, prefix=prefix), data_dir, was_running
    )
    assert interrupted_checked >= 2, "too few kills landed while an item ran"
