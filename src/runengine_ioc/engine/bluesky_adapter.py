"""The one place that relies on bluesky internals (no public API offers these yet).

Kept small on purpose: if bluesky changes, this is the file to mend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping
from types import CodeType, FrameType
from typing import Any, TypeVar

import bluesky.utils
from bluesky import RunEngine

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The message bluesky's RunEngine processes when a suspender lets the plan go on.
RESUME_FROM_SUSPENDER = "_resume_from_suspender"

#: The states in which bluesky is ending a plan (its task runs the plan's cleanup, or waits
#: to be let go on to do so).
ENDING_STATES = ("halting", "stopping", "aborting")


def describe_suspender(suspender: Any) -> str:
    """Which suspender, on which signal, and its message, in one short phrase."""
    signal = getattr(suspender, "_sig", None)
    where = getattr(signal, "name", "") or ""
    pvname = getattr(signal, "pvname", None)
    if pvname:
        where = f"{where} ({pvname})" if where else str(pvname)
    text = type(suspender).__name__ + (f" on {where}" if where else "")
    message = getattr(suspender, "_tripped_message", "")
    return f"{text}: {message}" if message else text


def interrupt_on_loop(
    re: RunEngine,
    kind: str,
    reason: str,
    timeout: float,
    may_act: Callable[[bool], bool] = lambda paused: True,
) -> bool | None:
    """Stop, abort or halt the plan, deciding on the RunEngine's own loop; True if it was paused.

    ``RunEngine.stop()/abort()/halt()`` read whether the plan is paused on the *calling*
    thread, then change the state on the loop: a pause that completes in between (``pausing``
    becomes ``paused``) leaves the plan's task waiting for a resume that nobody sends, and the
    RunEngine stays ``halting``/``aborting`` for good. Here the check and bluesky's interrupt
    coroutine (which does not await) run in one step of the loop, so they see the same state.
    When it returns True, the plan's task waits to be let go on: :func:`finish_interrupted`
    does that (on the thread that drives the RunEngine). Raises what bluesky raises when the
    state allows no such transition (``TransitionError``: idle, or already ending), and
    ``TimeoutError`` if the loop does not run it within ``timeout`` s (it is then dropped).

    ``may_act(paused)`` is asked on the loop first, in the same step: False (e.g. a resume is
    under way, whose rewind an interrupt must not meet half done) leaves the plan alone and
    returns None, to be tried again.
    """
    coroutines = {"stop": re._stop_coro, "abort": lambda: re._abort_coro(reason)}
    make = coroutines.get(kind, re._halt_coro)

    async def interrupt() -> bool | None:
        was_paused = str(re.state) == "paused"
        if not may_act(was_paused):
            return None
        inner: Coroutine[Any, Any, Any] = make()
        await inner  # bluesky's interrupt coroutines never suspend: one step with the check
        return was_paused

    future = asyncio.run_coroutine_threadsafe(interrupt(), re.loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"the RunEngine's loop did not answer within {timeout:.1f} s") from None


def call_on_loop(re: RunEngine, function: Callable[[], T], timeout: float) -> T:
    """``function()`` run on the RunEngine's loop, between two steps of its plan's task."""

    async def call() -> T:
        return function()

    future = asyncio.run_coroutine_threadsafe(call(), re.loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"the RunEngine's loop did not answer within {timeout:.1f} s") from None


def plan_depth(re: RunEngine) -> int:
    """How many plans bluesky has stacked (a resume stacks its replay of the messages since
    the last checkpoint on top of the paused plan, and takes it off once replayed)."""
    return len(re._plan_stack)


def set_call_metadata(re: RunEngine, metadata: Mapping[str, Any]) -> None:
    """Make ``metadata`` what the current ``RunEngine.__call__`` adds to each start document
    (bluesky's ``_metadata_per_call``): a plan that follows another within one call gets its
    own, not the first plan's."""
    re._metadata_per_call.clear()
    re._metadata_per_call.update(metadata)


def finish_interrupted(re: RunEngine) -> Any:
    """Let a plan interrupted while paused run its end; blocks until its task is done.

    What ``RunEngine.stop()`` does after its coroutine when the plan was paused: bluesky's
    ``_resume_task``, which returns at once if the task has already ended.
    """
    return re._resume_task()


def release_caller(re: RunEngine) -> None:
    """Let the thread blocked in this RunEngine's ``__call__``/``resume`` return at once.

    For a RunEngine being given up: its plan's task stays where it hangs, but the thread that
    drove it comes back (bluesky's ``_blocking_event``, which that thread waits on) and ends.
    """
    re._blocking_event.set()


def cancel_plan_task(re: RunEngine) -> None:
    """Cancel the plan's task of a RunEngine being given up, so that it does not linger.

    bluesky then throws the end it was carrying out (stop, abort, halt) into the plan once
    more; a cleanup that catches it and hangs again keeps the task, which harms nothing.
    """

    def cancel() -> None:
        task = re._task
        if task is not None and not task.done():
            task.cancel()

    re.loop.call_soon_threadsafe(cancel)


def loop_answers(re: RunEngine, timeout: float) -> bool:
    """True if the RunEngine's event loop runs a callback within ``timeout`` s (not blocked)."""

    async def nothing() -> None:
        return None

    future = asyncio.run_coroutine_threadsafe(nothing(), re.loop)
    try:
        future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        return False
    return True


# -------------------------------------------------- plan stubs' stacks, formatted lazily


class LazyPlanStack:
    """Where a plan stub was made: (code, line) pairs, formatted only if bluesky warns.

    bluesky's ``Plan.__init__`` runs ``traceback.format_stack()`` for every plan stub it
    makes (each ``bps.*`` call: several per point), only for the warning its ``__del__``
    gives when a stub is never iterated (a forgotten ``yield from``). Formatting walks the
    frames, ``stat``s every source file and reads a line of each: 59 % of a simulated point's
    time. This keeps the code object and line number of each frame instead (no frame is held,
    so no locals are kept alive), and formats them, the same lines as ``format_stack``, only
    when iterated: ``Plan.__del__`` does ``"".join(self._stack)``, and nothing else reads it.
    """

    __slots__ = ("_frames", "_name")

    def __init__(self, frame: FrameType | None, name: str) -> None:
        frames: list[tuple[CodeType, int | None]] = []
        while frame is not None:
            frames.append((frame.f_code, frame.f_lineno))
            frame = frame.f_back
        frames.reverse()
        self._frames = frames
        self._name = name

    def __bool__(self) -> bool:
        return True  # Plan.__del__ warns when its _stack is truthy (set to None once iterated)

    def __iter__(self) -> Iterator[str]:
        summary = traceback.StackSummary.from_list(
            [
                traceback.FrameSummary(code.co_filename, lineno, code.co_name)
                for code, lineno in self._frames
            ]
        )
        yield from summary.format()
        yield (
            f"RuntimeWarning: plan `{self._name}` was never iterated, "
            "did you mean to use `yield from`?"
        )


def _lazy_plan_init(self: Any, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """bluesky's ``Plan.__init__`` with the stack kept lazily (see :class:`LazyPlanStack`)."""
    self._iter = f(*args, **kwargs)
    # 0 is this frame, 1 bluesky's plan() wrapper: what format_stack()[:-2] leaves out
    self._stack = LazyPlanStack(sys._getframe(2), getattr(f, "__name__", repr(f)))


#: bluesky's own ``Plan.__init__``, kept to undo :func:`install_lazy_plan_stacks`.
_EAGER_PLAN_INIT = bluesky.utils.Plan.__init__


def install_lazy_plan_stacks() -> bool:
    """Make bluesky's plan stubs keep their stacks lazily; True if installed now.

    Process-wide (it replaces ``bluesky.utils.Plan.__init__``), idempotent, and done only if
    ``Plan`` still looks as this was written for (``__slots__`` ``_iter``/``_stack``, a
    ``__del__`` that warns): otherwise bluesky is left as it is, and the run only slower.
    Upstream, the change is docs/upstream/bluesky-lazy-stack.md.
    """
    plan_class = bluesky.utils.Plan
    if plan_class.__init__ is _lazy_plan_init:
        return False
    if getattr(plan_class, "__slots__", None) != ("_iter", "_stack") or not hasattr(
        plan_class, "__del__"
    ):
        log.warning("bluesky's Plan has changed: its stacks are left eager (slower)")
        return False
    plan_class.__init__ = _lazy_plan_init  # type: ignore[method-assign]
    return True


def uninstall_lazy_plan_stacks() -> None:
    """Give bluesky its own ``Plan.__init__`` back (for tests and benchmarks)."""
    bluesky.utils.Plan.__init__ = _EAGER_PLAN_INIT  # type: ignore[method-assign]
