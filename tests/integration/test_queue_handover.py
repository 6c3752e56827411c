"""The queue hands its next items to the worker ahead of their turn: Stop and Remove that land
at any moment, item boundaries included, still run every item once at most, in order, and
never one that a completed Remove took out.

Each round queues short items, starts the queue, and stops it (or removes one item) at a
random moment 0-0.5 s in, which falls before, during and between the items' runs over the
rounds. The run files are the judge: each item has at most one run, and the runs are exactly
the history's items.
"""

from __future__ import annotations

import random
import time

from .test_queue import _runs_by_item, add, history, items, wait_idle

#: about 60-100 ms a run: several item boundaries fall within the random window
SHORT = {"detectors": ["det"], "num": 2, "delay": 0.04}
ROUNDS = 8


def _check_round(ioc, added: list[str], removed: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    ran = [entry["uid"] for entry in history(ioc)]
    waiting = [entry["uid"] for entry in items(ioc)]
    runs = _runs_by_item(ioc.data_dir)
    assert all(len(runs.get(uid, [])) <= 1 for uid in added), "an item ran twice"
    assert sorted(uid for uid in added if uid in runs) == sorted(ran), (ran, runs)
    assert not set(ran) & set(waiting)
    kept = [uid for uid in added if uid != removed]
    assert ran + waiting == kept, "items lost, duplicated or out of order"
    assert all(entry["state"] == "success" for entry in history(ioc))
    return ran


def _reset(ioc) -> None:  # type: ignore[no-untyped-def]
    ioc.ca.put_ok("Queue:Clear", 1)
    ioc.ca.put_ok("History:Clear", 1)


def test_queue_stop_at_any_moment_runs_each_item_once_in_order(ioc) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    stopped_early = 0
    for round_ in range(ROUNDS):
        added = [add(ioc, args=SHORT) for _ in range(6)]
        pending = ioc.ca.start_put("Queue:Start", 1)
        wait_until_elapsed(rng.uniform(0.0, 0.5) if round_ else 0.0)  # the first: at once
        result = ioc.ca.put("Queue:Stop", 1)
        wait_idle(ioc)
        assert pending.wait(30) == 0
        ran = _check_round(ioc, added)
        if result.ok:  # else the queue had already finished all six
            stopped_early += len(ran) < len(added)
        _reset(ioc)
    assert stopped_early >= ROUNDS // 2, "too few stops landed while the queue ran"


def test_queue_remove_at_any_moment_never_runs_the_removed_item(ioc) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    removed_in_time = 0
    for round_ in range(ROUNDS):
        added = [add(ioc, args=SHORT) for _ in range(5)]
        target = added[2]
        pending = ioc.ca.start_put("Queue:Start", 1)
        wait_until_elapsed(rng.uniform(0.0, 0.4) if round_ else 0.0)  # the first: at once
        result = ioc.ca.put("Queue:Remove", target)
        wait_idle(ioc)
        assert pending.wait(30) == 0
        if result.ok:  # it was still queued: it must never run
            removed_in_time += 1
            ran = _check_round(ioc, added, removed=target)
            assert target not in ran and target not in _runs_by_item(ioc.data_dir)
        else:  # refused: it had already started (or run), as the history shows
            ran = _check_round(ioc, added)
            assert target in ran
        _reset(ioc)
    assert removed_in_time >= 1


def wait_until_elapsed(seconds: float) -> None:
    """Let ``seconds`` pass (the test's random moment, not a wait for a condition)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
