"""Heartbeat's health check and autosave's file handling, without Channel Access."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest
from caproto import AlarmSeverity

from runengine_ioc.ca.autosave import Autosave
from runengine_ioc.ca.heartbeat import HeartbeatGroup


class Commands:
    def __init__(self, state: str | Exception) -> None:
        self._state = state

    @property
    def state(self) -> str:
        if isinstance(self._state, Exception):
            raise self._state
        return self._state


def beating(state: str | Exception | None) -> bool:
    group = HeartbeatGroup(prefix="X:")
    if state is not None:
        group.context = SimpleNamespace(commands=Commands(state))  # type: ignore[assignment]
    return group.healthy()


@pytest.mark.parametrize("state", ["idle", "running", "paused", "suspending"])
def test_heartbeat_beats_while_the_worker_answers_and_has_not_panicked(state):
    assert beating(state)


def test_heartbeat_stops_when_panicked_unanswered_or_not_wired(caplog):
    assert not beating("panicked")
    assert not beating(None)  # before the IOC hands it the context
    with caplog.at_level(logging.WARNING):
        assert not beating(RuntimeError("worker thread gone"))
    assert "worker thread gone" in caplog.text


def test_heartbeat_counts_only_when_healthy():
    group = HeartbeatGroup(prefix="X:")
    scan = HeartbeatGroup.heartbeat.pvspec.scan  # caproto's loop around our function
    assert scan is not None
    group.context = SimpleNamespace(commands=Commands("idle"))  # type: ignore[assignment]

    async def one_beat() -> int:
        channel = group.heartbeat
        task = asyncio.ensure_future(scan(group, channel, SimpleNamespace(library=asyncio)))
        await asyncio.sleep(0.05)  # the first beat is at once; the next after a second
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return int(channel.value)

    assert asyncio.run(one_beat()) == 1
    assert group.heartbeat.alarm.severity == AlarmSeverity.NO_ALARM
    group.context = SimpleNamespace(commands=Commands("panicked"))  # type: ignore[assignment]
    assert asyncio.run(one_beat()) == 1  # no beat while panicked, and a MAJOR alarm
    assert group.heartbeat.alarm.severity == AlarmSeverity.MAJOR_ALARM
    group.context = SimpleNamespace(commands=Commands("idle"))  # type: ignore[assignment]
    assert asyncio.run(one_beat()) == 2  # well again: it counts on, the alarm clears
    assert group.heartbeat.alarm.severity == AlarmSeverity.NO_ALARM


def test_an_unreadable_autosave_file_is_set_aside_not_fatal(tmp_path, caplog):
    path = tmp_path / "autosave.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        autosave = Autosave(path)
    assert autosave.snapshot() == {}
    assert "unreadable" in caplog.text


def test_autosave_writes_atomically_and_keeps_the_old_file_if_it_cannot(tmp_path):
    path = tmp_path / "autosave.json"
    path.write_text(json.dumps({"format": 1, "values": {"PlanName": "count"}}))
    autosave = Autosave(path)
    assert autosave.snapshot() == {"PlanName": "count"}  # not attached: what was loaded
    autosave.save()
    assert json.loads(path.read_text())["values"] == {"PlanName": "count"}
    assert not list(tmp_path.glob("*.tmp"))
    autosave._saved = {"PlanName": object()}  # not JSON: the save fails, the file stays
    autosave.save()
    assert json.loads(path.read_text())["values"] == {"PlanName": "count"}
