"""The bridge's pre-flight checks: run before every plan reaches the worker, refusing at once."""

from __future__ import annotations

import asyncio

import pytest

from runengine_ioc.engine.bridge import Bridge
from runengine_ioc.engine.events import Refused

from .test_bridge import FakeWorker, run


def test_a_failing_preflight_refuses_the_plan_before_the_worker_sees_it():
    async def main() -> None:
        checked: list[str] = []
        full = True

        def disk() -> None:
            checked.append("disk")
            if full:
                raise Refused("no run started: the data directory is full")

        def other() -> None:
            checked.append("other")

        bridge = Bridge(asyncio.get_running_loop(), preflight=[disk])
        bridge.preflight.append(other)  # more may be added after construction
        worker = FakeWorker()
        bridge.attach(worker)  # type: ignore[arg-type]
        with pytest.raises(Refused, match="data directory is full"):
            await bridge.submit("count", {"num": 1}, {})
        assert worker.calls == []  # nothing accepted, no ticket
        assert checked == ["disk"]  # the first refusal ends the checks
        assert await bridge.wait_current_plan() is None

        full = False
        await bridge.submit("count", {"num": 1}, {})
        assert checked == ["disk", "disk", "other"]
        assert worker.calls == [("submit", "count", {"num": 1}, {})]

    run(main)
