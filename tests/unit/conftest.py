"""Fixtures shared by the unit tests: simulated devices, RunEngines and workers.

Everything here is in-process: no Channel Access, no caproto.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from bluesky import RunEngine
from ophyd.sim import hw

from runengine_ioc.engine.registry import Registry
from runengine_ioc.engine.worker import RunEngineWorker
from tests.polling import poll

#: How long threads a test started may take to end after it (they are asked to in teardown).
THREAD_GRACE = 5.0


@pytest.fixture(autouse=True)
def fail_on_threads_or_tasks_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a unit test that leaves threads running or asyncio tasks pending.

    A leaked worker thread or publishing task is how a wedge or a slow leak starts, and the
    next test would inherit it. Tasks: ``asyncio.run`` quietly cancels what is still pending
    when its main coroutine returns, so this looks at what is pending at that moment (through
    ``asyncio.runners._cancel_all_tasks``, the one hook there is). Threads: those started
    during the test must have ended within :data:`THREAD_GRACE` s after its teardown.
    """
    threads_before = set(threading.enumerate())
    left_tasks: list[str] = []
    cancel_all = asyncio.runners._cancel_all_tasks  # type: ignore[attr-defined]

    def recording_cancel_all(loop: asyncio.AbstractEventLoop) -> None:
        left_tasks.extend(repr(task) for task in asyncio.all_tasks(loop) if not task.done())
        cancel_all(loop)

    monkeypatch.setattr(asyncio.runners, "_cancel_all_tasks", recording_cancel_all)
    yield

    def new_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]

    poll(lambda: not new_threads(), THREAD_GRACE, interval=0.01)
    left_threads = [t.name for t in new_threads()]
    assert not left_tasks, f"asyncio tasks left pending: {left_tasks}"
    assert not left_threads, f"threads left running: {left_threads}"


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
