"""Fixtures shared by the unit tests: simulated devices, RunEngines and workers.

Everything here is in-process: no Channel Access, no caproto.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from bluesky import RunEngine
from ophyd.sim import hw

from runengine_ioc.engine.registry import Registry
from runengine_ioc.engine.worker import RunEngineWorker
from tests.leaks import fail_on_threads_or_tasks_left_behind  # noqa: F401 (autouse)


@pytest.fixture
def devices() -> SimpleNamespace:
    """Fresh simulated ophyd devices (``det``, ``motor``, ...) for each test."""
    return hw()


@pytest.fixture
def RE() -> Iterator[RunEngine]:
    """A fresh RunEngine on its own event loop, stopped and closed afterwards."""
    loop = asyncio.new_event_loop()
    engine = RunEngine({}, loop=loop, context_managers=[])
    yield engine
    if engine.state != "idle":
        engine.halt()
    loop.call_soon_threadsafe(loop.stop)
    engine._th.join(timeout=5)
    loop.close()


MakeWorker = Callable[..., RunEngineWorker]


@pytest.fixture
def make_worker() -> Iterator[MakeWorker]:
    """Build RunEngineWorkers; every one is shut down (and its RunEngine loop closed) after.

    ``shutdown`` may already have been called by the test: calling it again is harmless.
    """
    workers: list[RunEngineWorker] = []

    def make(registry: Registry, listener: Callable[[Any], None], **kwargs: Any) -> RunEngineWorker:
        worker = RunEngineWorker(registry, listener, **kwargs)
        workers.append(worker)
        return worker

    yield make

    clean = [worker.shutdown(reason="test teardown", timeout=10) for worker in workers]
    for worker in workers:
        # The RunEngine runs its event loop on a thread of its own; shutdown() stops the loop
        # but leaves it open. Close it here so that no unclosed loop outlives the test.
        engine = worker._re
        engine._th.join(timeout=5)
        if not engine.loop.is_running():
            engine.loop.close()
    assert all(clean), "a worker did not shut down cleanly"
