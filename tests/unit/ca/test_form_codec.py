"""How a form PV's value becomes a plan argument (no Channel Access needed)."""

from __future__ import annotations

import numpy as np
import pytest

from runengine_ioc.ca.forms import FieldCodec
from runengine_ioc.engine.registry import ArgumentError, ParameterInfo


def codec(kind: str, **extra: object) -> FieldCodec:
    return FieldCodec(ParameterInfo("p", kind, required=True, **extra))  # type: ignore[arg-type]


def test_text_parameters_are_taken_as_typed_not_parsed_as_json():
    assert codec("str").argument("hello world") == "hello world"
    assert codec("json").argument('{"a": 1}') == {"a": 1}


def test_device_lists_take_names_or_a_json_list():
    assert codec("devices").argument(" det1, det2 ") == "det1, det2"
    assert codec("devices").argument('["det1", "det2"]') == ["det1", "det2"]
    assert codec("device").argument("  ") is None


def test_choices_map_back_to_the_plans_own_values():
    choice = codec("choice", choices=("1", "2"), choice_values=(1, 2))
    assert choice.argument("2") == 2


@pytest.mark.parametrize("kind", ["str", "json", "device", "devices"])
def test_a_number_where_text_is_expected_is_refused_in_words(kind):
    with pytest.raises(ArgumentError, match=r"^expected text, got the number 3$"):
        codec(kind).argument(np.uint16(3))


def test_json_that_does_not_parse_is_refused_in_words():
    with pytest.raises(ArgumentError, match="argument 'p': not valid JSON"):
        codec("json").argument("{oops")
