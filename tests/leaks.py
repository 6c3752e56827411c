"""A fixture, as ophyd-async has, that fails a test leaving threads or asyncio tasks behind.

Imported (autouse) by the conftest of the test folders where nothing should outlive a test:
``tests/unit`` and ``tests/inprocess``.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import threading
from collections.abc import Iterator

import pytest

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
