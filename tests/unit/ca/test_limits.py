"""The CA side of the limits: counts that fit a longin, form PVs a parameter may not shadow."""

from __future__ import annotations

import pytest

from runengine_ioc.ca.forms import PlanForm
from runengine_ioc.ca.selection import parse_json_object
from runengine_ioc.ca.status import LONG_RANGE, fit_long
from runengine_ioc.engine.registry import RESERVED_PARAMETER_NAMES, ArgumentError


@pytest.mark.parametrize(
    ("value", "shown", "clipped"),
    [
        (0, 0, False),
        (2**31 - 1, 2**31 - 1, False),
        (2**31, 2**31 - 1, True),
        (2**70, 2**31 - 1, True),
        (-(2**31), -(2**31), False),
        (-(2**40), -(2**31), True),
    ],
)
def test_a_count_beyond_a_longin_is_clamped_never_wrapped(value, shown, clipped):
    assert fit_long(value) == (shown, clipped)
    assert LONG_RANGE == (-(2**31), 2**31 - 1)


def test_every_pv_of_a_form_itself_is_a_reserved_parameter_name():
    """A button added to the forms must be reserved too, or a plan parameter could shadow it."""
    own = {prop.pvspec.name for prop in PlanForm._pvs_.values()}
    assert own, "no PVs found on PlanForm"
    assert own <= RESERVED_PARAMETER_NAMES, own - RESERVED_PARAMETER_NAMES


@pytest.mark.parametrize("text", ['{"x": NaN}', '{"x": Infinity}', '{"x": [-Infinity]}'])
def test_json_that_is_not_json_is_refused(text):
    with pytest.raises(ArgumentError, match="is not a number JSON allows"):
        parse_json_object(text, "Metadata")


def test_deep_json_is_refused_in_words():
    with pytest.raises(ArgumentError, match="nested too deeply"):
        parse_json_object('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "PlanArgs")
