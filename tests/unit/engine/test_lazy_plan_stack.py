"""bluesky's plan stubs keep their stacks lazily, and still warn when never iterated.

bluesky's own ``Plan.__init__`` formats the whole stack for every stub; the adapter's keeps
(code, line) pairs and formats them only for the warning. The warning must be the same text,
naming the line where the ``yield from`` was forgotten.
"""

from __future__ import annotations

import gc
import inspect
import warnings
from collections.abc import Iterator

import bluesky.plan_stubs as bps
import bluesky.utils
import pytest

from runengine_ioc.engine.bluesky_adapter import (
    LazyPlanStack,
    install_lazy_plan_stacks,
    uninstall_lazy_plan_stacks,
)


@pytest.fixture
def lazy() -> Iterator[None]:
    assert install_lazy_plan_stacks()
    yield
    uninstall_lazy_plan_stacks()


def forget_yield_from() -> int:
    """Make a stub and drop it, like a plan that forgot ``yield from``; its line number."""
    bps.sleep(0)  # dropped at once: Plan.__del__ warns
    return inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]


def never_iterated_warning() -> tuple[str, int]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = forget_yield_from()
        gc.collect()
    (warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    return str(warning.message), line


def test_the_never_iterated_warning_still_names_the_place_and_reads_as_bluesky_s():
    messages = []
    for lazy in (False, True):  # one call site for both, so the stacks are the same
        if lazy:
            assert install_lazy_plan_stacks()
        try:
            messages.append(never_iterated_warning())
        finally:
            uninstall_lazy_plan_stacks()
    (eager, line), (lazy_text, lazy_line) = messages
    assert line == lazy_line
    assert lazy_text == eager  # word for word what bluesky itself says
    last_frame = lazy_text.strip().splitlines()[-3:]
    assert last_frame == [
        f'  File "{__file__}", line {line}, in forget_yield_from',
        "    bps.sleep(0)  # dropped at once: Plan.__del__ warns",
        "RuntimeWarning: plan `sleep` was never iterated, did you mean to use `yield from`?",
    ]


def test_an_iterated_stub_neither_warns_nor_formats(lazy, monkeypatch):
    def no_formatting(self: LazyPlanStack) -> Iterator[str]:
        raise AssertionError("formatted a stack nobody asked for")

    monkeypatch.setattr(LazyPlanStack, "__iter__", no_formatting)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stub = bps.null()
        assert isinstance(stub._stack, LazyPlanStack)
        assert list(stub) == [bluesky.utils.Msg("null")]
        assert stub._stack is None
        del stub
        gc.collect()


def test_installing_is_idempotent_and_undone(lazy):
    assert not install_lazy_plan_stacks()  # already there
    stub = bps.null()
    assert isinstance(stub._stack, LazyPlanStack)
    list(stub)
    uninstall_lazy_plan_stacks()
    stub = bps.null()
    assert isinstance(stub._stack, list)  # bluesky's own, eager
    list(stub)
    assert install_lazy_plan_stacks()
