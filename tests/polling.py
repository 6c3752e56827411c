"""Waiting by polling with a deadline, never a bare sleep: one helper for tests and benchmarks.

``wait_until`` returns the first truthy value of a probe (so a test can wait *for* something,
not only until something), and raises ``TimeoutError`` naming what it waited for, with the
last value seen. ``poll`` is the same but returns ``None`` on time-out, for benchmarks that
record a miss instead of failing. ``async_wait_until`` is for code on an event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(probe: Callable[[], T], timeout: float, interval: float = 0.02) -> T | None:
    """The first truthy value of ``probe()`` within ``timeout`` s, else ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_until(
    probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> T:
    """The first truthy value of ``probe()``; ``TimeoutError`` after ``timeout`` s."""
    seen: list[T] = []

    def recorded() -> T:
        value = probe()
        seen[:] = [value]
        return value

    value = poll(recorded, timeout, interval)
    if value is None:
        last = f"; last {seen[0]!r}" if seen else ""
        raise TimeoutError(f"not within {timeout} s: {what or probe}{last}")
    return value


async def async_wait_until(
    probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.002, what: str = ""
) -> T:
    """:func:`wait_until` on an event loop: sleeps with ``asyncio.sleep`` between probes."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout} s: {what or probe}; last {value!r}")
        await asyncio.sleep(interval)
