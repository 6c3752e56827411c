"""What the worker keeps per RunEngine, and the watches it runs beside the plan.

:class:`Engine` is one RunEngine with the thread that drives it: the worker replaces it as a
whole when it has to give a RunEngine up, so everything tied to one RunEngine (its commands
queue, its document subscriptions, the flag that silences it) lives here. :class:`StuckWatch`
says when a plan has been ending for too long; :class:`Suspensions` follows bluesky's
suspenders, which bluesky itself reports only as ``running``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bluesky import RunEngine

from .bluesky_adapter import RESUME_FROM_SUSPENDER, describe_suspender, loop_answers
from .events import DocumentCallback, Listener, StateChanged, StatusMessage


class Engine:
    """One RunEngine with the thread that drives it and that thread's commands.

    The old thread of a given-up RunEngine may still be in a RunEngine call: it keeps its own
    queue, and once ``abandoned`` nothing of that RunEngine reaches a callback or the listener.
    """

    def __init__(self, generation: int, re: RunEngine) -> None:
        self.generation = generation
        self.re = re
        self.commands: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.abandoned = False
        self.docs_lock = threading.Lock()  # held while one of its documents is handed on
        self.profile_tokens: list[int] = []
        self.thread: threading.Thread | None = None

    def gated(self, callback: DocumentCallback) -> DocumentCallback:
        """A callback that hears nothing more from this RunEngine once it has been given up."""

        def forward(name: str, doc: dict) -> Any:
            with self.docs_lock:
                if self.abandoned:
                    return None
                return callback(name, doc)

        return forward

    def install_profile(
        self,
        callbacks: Iterable[DocumentCallback],
        suspenders: Iterable[Any],
        metadata: Mapping[str, Any],
        old_metadata: Iterable[str],
    ) -> None:
        """Replace the profile's callbacks, suspenders and start-document defaults."""
        re = self.re
        for token in self.profile_tokens:
            re.unsubscribe(token)
        self.profile_tokens = [re.subscribe(self.gated(callback)) for callback in callbacks]
        re.clear_suspenders()
        for suspender in suspenders:
            re.install_suspender(suspender)
        for key in old_metadata:
            re.md.pop(key, None)
        re.md.update(metadata)

    def successor(self, options: Mapping[str, Any]) -> RunEngine:
        """A fresh RunEngine to take over: same metadata, on this loop if it still answers
        (devices bound to it keep working), else on a new one."""
        loop = self.re.loop if loop_answers(self.re, 0.5) else None
        return RunEngine(dict(self.re.md), loop=loop, **options)


class StuckWatch:
    """Says so if a plan is still ending (stopping, aborting, halting) ``after`` s on.

    One timer at a time, armed as the RunEngine starts ending a plan and cancelled as it
    leaves: State is published again with ``stuck`` (a MAJOR alarm) and Status says what to do.
    """

    _VERBS = {"stopping": "Stop", "aborting": "Abort", "halting": "Halt"}

    def __init__(self, after: float, listener: Listener, busy: Callable[[], bool]) -> None:
        self._after = after
        self._listener = listener
        self._busy = busy
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def arm(self, engine: Engine, state: str) -> None:
        def check() -> None:
            if engine.abandoned or str(engine.re.state) != state or not self._busy():
                return
            self._listener(StateChanged(state, state, stuck=True))
            self._listener(
                StatusMessage(
                    f"{self._VERBS.get(state, state)} has not ended the plan after "
                    f"{self._after:.1f} s (its cleanup may hang): Halt gives the RunEngine up"
                )
            )

        timer = threading.Timer(self._after, check)
        timer.name = "runengine-stuck-watch"
        timer.daemon = True
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = timer
        timer.start()

    def cancel(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


def tripped_suspenders(re: RunEngine) -> str:
    """The suspenders of ``re`` that hold the plan now, in words ("" if none)."""
    return "; ".join(describe_suspender(s) for s in re.suspenders if getattr(s, "tripped", 0))


@dataclass
class _Suspension:
    since: float
    reason: str
    before_start: bool = False  # tripped when the plan was submitted: bluesky waits first


class Suspensions:
    """From a suspender tripping until the plan goes on, the IOC shows ``suspending``.

    bluesky waits for a tripped suspender in its ``running`` state (and, for one tripped
    before the plan started, before its first message): this notices both, from the state
    hook and the message hook, and says how long the plan was held.
    """

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._lock = threading.Lock()
        self._current: _Suspension | None = None

    def clear(self) -> None:
        with self._lock:
            self._current = None

    def before_start(self, reason: str, plan_name: str) -> None:
        with self._lock:
            self._current = _Suspension(time.monotonic(), reason, before_start=True)
        self._listener(StatusMessage(f"suspended before starting {plan_name}: {reason}"))

    def on_state(self, new: str, old: str, tripped: Callable[[], str]) -> tuple[str, str]:
        """The transition as the IOC shows it (``running`` read as ``suspending`` when held)."""
        with self._lock:
            suspended = self._current is not None
            if new == "suspending" and not suspended:
                reason = tripped() or "a suspender tripped"
                self._current = _Suspension(time.monotonic(), reason)
                self._listener(StatusMessage(f"suspended: {reason}"))
            if suspended:
                new = "suspending" if new == "running" else new
                old = "suspending" if old == "running" else old
            if new == "idle":
                self._current = None
        return new, old

    def on_msg(self, msg: Any, state: Callable[[], str]) -> None:
        """Each message the RunEngine processes: notices the end of a suspension."""
        suspension = self._current
        if suspension is None:
            return
        command = getattr(msg, "command", "")
        ended = command == RESUME_FROM_SUSPENDER or (
            suspension.before_start and command != "wait_for"
        )
        if not ended:
            return
        with self._lock:
            self._current = None
        took = time.monotonic() - suspension.since
        self._listener(StatusMessage(f"resuming after {took:.1f} s suspended"))
        if state() == "running":
            self._listener(StateChanged("running", "suspending"))
