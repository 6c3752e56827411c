"""The one place that relies on bluesky internals (no public API offers these yet).

Kept small on purpose: if bluesky changes, this is the file to mend.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

import bluesky.utils

log = logging.getLogger(__name__)

#: The message bluesky's RunEngine processes when a suspender lets the plan go on.
RESUME_FROM_SUSPENDER = "_resume_from_suspender"


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
