"""Which updates the fan-out may hold back to share one write, and which never."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from runengine_ioc.ca import fanout
from runengine_ioc.ca.fanout import FanoutCircuit, _Entry


def circuit_with(entries: list[_Entry], batch_time: float = 0.002) -> FanoutCircuit:
    """A circuit that has just sent (its batch window open) with ``entries`` waiting."""
    circuit = FanoutCircuit.__new__(FanoutCircuit)  # no socket: only the batching is tested
    circuit.context = SimpleNamespace(batch_time=batch_time)  # type: ignore[assignment]
    circuit._outbox = deque(entries)
    circuit._last_send = asyncio.get_event_loop().time()
    return circuit


def held(entries: list[_Entry], monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the sender takes before sending these entries."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(fanout.asyncio, "sleep", sleep)

    async def main() -> None:
        await circuit_with(entries)._gather_burst()

    asyncio.run(main())
    return pauses


def monitor(urgent: bool = False) -> _Entry:
    return _Entry([object()], subscriptionid=1, urgent=urgent)


def test_back_to_back_monitors_wait_for_the_batch_window(monkeypatch):
    (pause,) = held([monitor(), monitor()], monkeypatch)
    assert 0 < pause <= 0.002


def test_an_urgent_pv_such_as_state_is_never_held(monkeypatch):
    assert held([monitor(), monitor(urgent=True)], monkeypatch) == []


def test_a_reply_is_never_held(monkeypatch):
    reply = _Entry([object()], done=None)
    assert held([monitor(), reply], monkeypatch) == []


def test_urgent_entries_are_marked_by_the_context(monkeypatch):
    state, progress = object(), object()
    context = SimpleNamespace(urgent={state})
    posted: list[Any] = []
    circuit = FanoutCircuit.__new__(FanoutCircuit)
    circuit.context = context  # type: ignore[assignment]
    circuit._outbox = deque()
    circuit._wake = SimpleNamespace(set=lambda: posted.append("wake"))  # type: ignore[assignment]
    circuit.stats = fanout.FanoutStats()
    circuit._sending = True
    monkeypatch.setattr(FanoutCircuit, "connected", True, raising=False)
    for index, channel in enumerate((state, progress)):
        spec = SimpleNamespace(db_entry=channel)
        circuit.post_monitor(spec, SimpleNamespace(subscriptionid=index), object())  # type: ignore[arg-type]
    assert [entry.urgent for entry in circuit._outbox] == [True, False]
