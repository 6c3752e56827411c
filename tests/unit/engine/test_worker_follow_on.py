"""A plan handed over to follow the current one (the queue's next item): it starts on the
worker's thread the moment the current plan ends in success, and never after anything else."""

# ruff: noqa: F811  (the worker fixtures of test_worker, imported, are the tests' parameters)

from __future__ import annotations

import pytest

from runengine_ioc.engine.events import ExitStatus, PlanAccepted, PlanFinished
from runengine_ioc.engine.registry import ArgumentError

from .test_worker import (  # noqa: F401  (fixtures)
    SHORT_SLOW,
    SLOW,
    DocLog,
    EventLog,
    _interrupt,
    _runs_to_success,
    docs,
    events,
    registry,
    worker,
)

ONE = {"detectors": ["det"], "num": 1}
QUICK = {"detectors": ["det"], "num": 2, "ticks": 2, "tick": 0.01}


def test_a_plan_handed_over_starts_at_the_end_of_a_success_without_a_moment_idle(
    worker, events: EventLog, docs: DocLog
) -> None:
    first = worker.submit("slow_count", QUICK, {})
    second = worker.submit_after(first, "count", ONE, {"purpose": "next"})
    assert second is not None and second > first
    finished = events.wait_finished(second)
    assert finished.exit_status is ExitStatus.SUCCESS
    ended = events.wait_finished(first)
    assert ended.followed_by == second and ended.exit_status is ExitStatus.SUCCESS
    accepted = next(e for e in events.after(ended) if isinstance(e, PlanAccepted))
    assert accepted.ticket == second
    # the worker was busy throughout: no Start could have slipped in between the two
    busy_at = [busy for event, busy in events.records if event is ended or event is accepted]
    assert busy_at == [True, True]
    starts, stops = docs.of("start"), docs.of("stop")
    assert [s["plan_name"] for s in starts] == ["slow_count", "count"]
    assert starts[1]["purpose"] == "next"
    assert [s["exit_status"] for s in stops] == ["success", "success"]
    print(f"\nstop to next start: {(starts[1]['time'] - stops[0]['time']) * 1e3:.2f} ms")
    assert not worker.busy


@pytest.mark.parametrize("ending", ["fail", "stop", "abort", "halt"])
def test_a_plan_handed_over_never_follows_a_failure_or_an_interrupt(
    worker, events: EventLog, docs: DocLog, ending: str
) -> None:
    if ending == "fail":
        first = worker.submit("fail_after", {"detectors": ["det"]}, {})
    else:
        first = worker.submit("slow_count", SLOW, {})
    second = worker.submit_after(first, "count", ONE, {})
    assert second is not None
    if ending != "fail":
        events.wait_point(1)
        _interrupt(worker, ending)
    ended = events.wait_finished(first)
    assert ended.followed_by is None
    events.wait_for(lambda e: getattr(e, "state", None) == "idle")
    assert not any(isinstance(e, PlanAccepted) and e.ticket == second for e in events.events)
    assert len(docs.of("start")) == 1
    assert worker.cancel_follow_ons() == []  # dropped: nothing left to withdraw
    _runs_to_success(worker, events, docs)


def test_withdrawn_plans_do_not_start_and_a_started_one_runs_on(
    worker, events: EventLog, docs: DocLog
) -> None:
    first = worker.submit("slow_count", SHORT_SLOW, {})
    second = worker.submit_after(first, "count", ONE, {})
    third = worker.submit_after(second, "count", ONE, {})
    assert second is not None and third is not None
    assert worker.cancel_follow_ons() == [second, third]
    assert events.wait_finished(first).followed_by is None
    assert len(docs.of("start")) == 1

    fourth = worker.submit("slow_count", QUICK, {})
    fifth = worker.submit_after(fourth, "count", ONE, {})
    assert fifth is not None
    assert events.wait_finished(fourth).followed_by == fifth
    assert worker.cancel_follow_ons() == []  # it has started: it runs to its end
    assert events.wait_finished(fifth).exit_status is ExitStatus.SUCCESS


def test_a_chain_of_plans_handed_over_runs_in_order_and_a_failure_drops_the_rest(
    worker, events: EventLog, docs: DocLog
) -> None:
    first = worker.submit("slow_count", QUICK, {})
    second = worker.submit_after(first, "count", ONE, {"n": 2})
    third = worker.submit_after(second, "fail_after", {"detectors": ["det"]}, {"n": 3})
    fourth = worker.submit_after(third, "count", ONE, {"n": 4})
    assert None not in (second, third, fourth)
    assert worker.submit_after(first, "count", ONE, {}) is None  # only after the last one
    assert events.wait_finished(first).followed_by == second
    assert events.wait_finished(second).followed_by == third
    failed = events.wait_finished(third)
    assert failed.exit_status is ExitStatus.FAIL and failed.followed_by is None
    events.wait_for(lambda e: getattr(e, "state", None) == "idle")
    assert [s.get("n") for s in docs.of("start")] == [None, 2, 3]  # the fourth never ran
    assert not worker.busy
    _runs_to_success(worker, events, docs)


def test_handing_over_after_the_end_or_with_bad_arguments_is_refused(
    worker, events: EventLog, docs: DocLog
) -> None:
    first = worker.submit("count", ONE, {})
    events.wait_finished(first)
    assert worker.submit_after(first, "count", ONE, {}) is None  # it has ended: nothing kept
    running = worker.submit("slow_count", SHORT_SLOW, {})
    with pytest.raises(ArgumentError):
        worker.submit_after(running, "count", {"detectors": ["nope"]}, {})
    follow_on = worker.submit_after(running, "count", ONE, {})
    finished = events.wait_finished(running)
    assert isinstance(finished, PlanFinished) and finished.followed_by == follow_on
    events.wait_finished(follow_on)


def test_a_plan_following_within_one_call_has_its_own_metadata_and_no_idle_between(
    worker, events: EventLog, docs: DocLog
) -> None:
    first = worker.submit("slow_count", QUICK, {"purpose": "first", "only_first": 1})
    second = worker.submit_after(first, "count", ONE, {"purpose": "second"})
    third = worker.submit_after(second, "count", ONE, {})
    assert events.wait_finished(first).followed_by == second
    assert events.wait_finished(second).followed_by == third
    events.wait_finished(third)
    starts = docs.of("start")
    assert [s.get("purpose") for s in starts] == ["first", "second", None]
    assert all("only_first" not in s for s in starts[1:])  # not the first plan's metadata
    assert [s["plan_name"] for s in starts] == ["slow_count", "count", "count"]
    # the RunEngine ran on from one plan into the next: idle only at the very end
    states = events.states()
    assert states.count("idle") == 1 and states[-1] == "idle", states
