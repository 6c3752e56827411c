"""The registry: plans and devices by name, and validation of plan arguments."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from bluesky.protocols import Movable, Readable
from ophyd.sim import SynAxis
from pydantic import Field

from runengine_ioc.engine.registry import ArgumentError, Registry, ValidatedPlan
from runengine_ioc.plans import DEFAULT_PLANS


@pytest.fixture
def registry(devices: SimpleNamespace) -> Registry:
    d = devices
    return Registry([d.det, d.det1, d.det2, d.motor, d.motor1, d.motor2, d.flyer1], DEFAULT_PLANS)


SCAN = {"detectors": ["det"], "motor": "motor", "start": 0, "stop": 1, "num": 3}


def refusal(registry: Registry, plan: str, arguments: Any) -> str:
    with pytest.raises(ArgumentError) as info:
        registry.validate(plan, arguments)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- names -------------------------------------------------------------------------------


def test_names_are_sorted_and_devices_are_top_level_only(registry):
    assert registry.plan_names == (
        "count",
        "grid_scan",
        "list_scan",
        "mv",
        "rel_grid_scan",
        "rel_scan",
        "scan",
    )
    assert registry.device_names == ("det", "det1", "det2", "flyer1", "motor", "motor1", "motor2")


def test_mappings_give_the_names(devices):
    registry = Registry({"m": devices.motor}, {"go": DEFAULT_PLANS[0]})
    assert registry.device("m") is devices.motor
    assert registry.plan("go") is DEFAULT_PLANS[0]


def test_unknown_plan_lists_the_known_ones(registry):
    message = "unknown plan 'nope'; known plans: count, grid_scan, list_scan, mv, rel_grid_scan"
    with pytest.raises(ArgumentError, match=message):
        registry.plan("nope")
    with pytest.raises(ArgumentError, match="unknown plan 'nope'"):
        registry.check_plan_name("nope")
    with pytest.raises(ArgumentError, match="unknown plan 'nope'"):
        registry.validate("nope", {})
    registry.check_plan_name("scan")


def test_dotted_names_reach_real_components_only(registry, devices):
    assert registry.device("motor.readback") is devices.motor.readback
    assert registry.device("motor.setpoint") is devices.motor.setpoint
    for name, message in [
        ("motor.foo", "unknown device 'motor.foo': 'motor' has no component 'foo'"),
        ("motor.name", "unknown device 'motor.name': 'motor' has no component 'name'"),
        ("motor.readback.x", "unknown device 'motor.readback.x': 'motor.readback' has no "),
        ("detx", "unknown device 'detx'"),
    ]:
        with pytest.raises(ArgumentError) as info:
            registry.device(name)
        assert str(info.value).startswith(message)


def test_device_kind(registry, devices):
    assert registry.device_kind("motor") == "movable"
    assert registry.device_kind("det") == "readable"
    assert registry.device_kind("flyer1") == "flyable"
    assert registry.device_kind(object()) == "other"
    assert registry.device_kind(devices.motor.readback) == "movable"


def test_plan_summary_is_the_first_docstring_line(registry):
    summary = "Read the detectors ``num`` times, without moving anything."
    assert registry.plan_summary("count") == summary


# -- registration errors -------------------------------------------------------------------


def test_duplicate_device_names_are_refused(devices):
    with pytest.raises(ValueError, match="duplicate device name 'det'"):
        Registry([devices.det, devices.ab_det], [])  # ab_det is also called 'det'


def test_duplicate_plan_names_are_refused():
    with pytest.raises(ValueError, match="duplicate plan name 'count'"):
        Registry([], [DEFAULT_PLANS[0], DEFAULT_PLANS[0]])


def test_device_names_with_separators_are_refused(devices):
    with pytest.raises(ValueError, match="invalid device name 'a b'"):
        Registry({"a b": devices.det}, [])


def test_plans_with_star_args_or_kwargs_are_refused():
    def by_args(*args):
        yield from ()

    def by_kwargs(detectors: Sequence[Readable], **kwargs):
        yield from ()

    with pytest.raises(TypeError, match=r"plan 'by_args' takes \*args; plans must take explicit"):
        Registry([], [by_args])
    with pytest.raises(TypeError, match=r"plan 'by_kwargs' takes \*\*kwargs"):
        Registry([], [by_kwargs])


def test_plans_that_are_not_generator_functions_are_refused():
    def not_a_plan(num: int):
        return [num]

    with pytest.raises(TypeError, match="plan 'not_a_plan' is not a generator function"):
        Registry([], [not_a_plan])


def test_annotations_mixing_devices_and_data_are_refused():
    def odd(target: Movable | float):
        yield from ()

    with pytest.raises(TypeError, match=r"plan 'odd', parameter 'target': .* mixes devices"):
        Registry([], [odd])


# -- refusals --------------------------------------------------------------------------------


def test_wrong_kind_of_device_is_refused(registry):
    message = refusal(registry, "scan", {**SCAN, "motor": "det"})
    assert message == "scan: argument 'motor': 'det' is a readable device, not a movable one"
    message = refusal(registry, "count", {"detectors": ["det", "flyer1"]})
    assert message == (
        "count: argument 'detectors' (item 1): 'flyer1' is a flyable device, not a readable one"
    )


def test_missing_argument_is_refused(registry):
    arguments = {k: v for k, v in SCAN.items() if k != "num"}
    assert refusal(registry, "scan", arguments) == "scan: missing argument 'num'"


def test_unknown_argument_is_refused_with_the_parameter_list(registry):
    arguments = {k: v for k, v in SCAN.items() if k != "num"} | {"nmu": 10}
    assert refusal(registry, "scan", arguments) == (
        "scan: unknown argument 'nmu' (parameters: detectors, motor, start, stop, num)"
    )


def test_md_is_not_an_argument(registry):
    message = refusal(registry, "count", {"detectors": "det", "md": {"sample": "x"}})
    assert message.startswith("count: unknown argument 'md' (parameters: detectors, num, delay)")


def test_string_is_not_an_integer(registry):
    assert refusal(registry, "scan", {**SCAN, "num": "ten"}) == (
        "scan: argument 'num': expected an integer, got 'ten'"
    )
    assert "expected an integer, got '10'" in refusal(registry, "scan", {**SCAN, "num": "10"})


def test_bool_is_not_a_number(registry):
    assert "argument 'num': expected an integer, got True" in refusal(
        registry, "scan", {**SCAN, "num": True}
    )
    assert "argument 'start': expected a number, got False" in refusal(
        registry, "scan", {**SCAN, "start": False}
    )


def test_float_is_not_an_integer(registry):
    assert "argument 'num': expected an integer, got 3.0" in refusal(
        registry, "scan", {**SCAN, "num": 3.0}
    )


def test_annotated_constraints_are_enforced(registry):
    assert refusal(registry, "scan", {**SCAN, "num": 0}) == (
        "scan: argument 'num': must be greater than or equal to 1, got 0"
    )
    assert "argument 'delay': must be greater than or equal to 0, got -1" in refusal(
        registry, "count", {"detectors": "det", "delay": -1}
    )
    assert "argument 'start': expected a finite number, got nan" in refusal(
        registry, "scan", {**SCAN, "start": float("nan")}
    )


def test_list_items_are_checked_with_their_index(registry):
    arguments = {"detectors": "det", "motor": "motor", "positions": [1, "x"]}
    assert refusal(registry, "list_scan", arguments) == (
        "list_scan: argument 'positions' (item 1): expected a number, got 'x'"
    )
    arguments["positions"] = []
    assert "argument 'positions': must have at least 1 item(s), got []" in refusal(
        registry, "list_scan", arguments
    )


def test_unknown_device_is_refused(registry):
    assert refusal(registry, "count", {"detectors": ["detx"]}) == (
        "count: argument 'detectors': unknown device 'detx'"
    )
    assert refusal(registry, "scan", {**SCAN, "motor": "motorx"}) == (
        "scan: argument 'motor': unknown device 'motorx'"
    )


@pytest.mark.parametrize("detectors", [[], "", " , "])
def test_empty_device_list_is_refused(registry, detectors):
    assert refusal(registry, "count", {"detectors": detectors}) == (
        "count: argument 'detectors': at least one device is needed"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (5, "argument 'detectors': expected a list of device names, got 5"),
        ([5], "argument 'detectors': expected a device name, got 5"),
        (["det", None], "argument 'detectors' (item 1): expected a device name, got None"),
        ("det det", "argument 'detectors' (item 1): device 'det' is given more than once"),
    ],
)
def test_malformed_device_lists_are_refused(registry, value, fragment):
    assert fragment in refusal(registry, "count", {"detectors": value})


def test_single_device_takes_one_name(registry):
    assert "argument 'motor': expected one device name, got 'motor motor1'" in refusal(
        registry, "scan", {**SCAN, "motor": "motor motor1"}
    )
    assert "argument 'motor': expected a device name, got ['motor']" in refusal(
        registry, "scan", {**SCAN, "motor": ["motor"]}
    )


@pytest.mark.parametrize("arguments", [["det"], "detectors=det", None, 3])
def test_arguments_must_be_a_mapping(registry, arguments):
    assert refusal(registry, "count", arguments).startswith(
        "count: arguments must be a mapping of parameter names to values, got "
    )


def test_errors_inside_a_plan_validator_become_argument_errors():
    def picky(x: Annotated[float, Field(multiple_of=0.5)]):
        yield from ()

    registry = Registry([], [picky])
    assert refusal(registry, "picky", {"x": 0.3}).startswith(
        "picky: argument 'x': must be a multiple of 0.5"
    )


# -- acceptance -------------------------------------------------------------------------------


@pytest.mark.parametrize("detectors", ["det1 det2", "det1, det2", "det1,det2", ["det1", "det2"]])
def test_device_lists_by_spaces_commas_or_json_list(registry, devices, detectors):
    validated = registry.validate("count", {"detectors": detectors})
    assert validated.arguments == {"detectors": [devices.det1, devices.det2]}
    assert validated.raw_arguments == {"detectors": detectors}


def test_dotted_component_names_are_accepted_as_arguments(registry, devices):
    validated = registry.validate(
        "list_scan",
        {"detectors": "det motor.readback", "motor": "motor.setpoint", "positions": [1, 2]},
    )
    assert validated.arguments["detectors"] == [devices.det, devices.motor.readback]
    assert validated.arguments["motor"] is devices.motor.setpoint


def test_ints_are_accepted_for_floats_and_coerced(registry):
    validated = registry.validate("scan", SCAN)
    assert validated.arguments["start"] == 0.0
    assert isinstance(validated.arguments["start"], float)
    assert isinstance(validated.arguments["num"], int)


def test_defaults_are_left_to_the_plan(registry, devices):
    validated = registry.validate("count", {"detectors": "det"})
    assert validated.arguments == {"detectors": [devices.det]}


def test_raw_arguments_are_a_json_able_copy(registry):
    arguments = {"detectors": ["det"], "num": 2}
    validated = registry.validate("count", arguments)
    arguments["detectors"].append("det1")
    assert validated.raw_arguments == {"detectors": ["det"], "num": 2}
    json.dumps(validated.raw_arguments)


def test_unannotated_parameters_take_any_json_value():
    def loose(anything, flag: bool = False):
        yield from ()

    registry = Registry([], [loose])
    value = {"a": [1, "two", None]}
    assert registry.validate("loose", {"anything": value}).arguments == {"anything": value}
    assert "argument 'flag': expected true or false, got 1" in refusal(
        registry, "loose", {"anything": 1, "flag": 1}
    )


def test_optional_devices_take_null(devices):
    def maybe(motor: Movable | None = None, dets: Sequence[Readable] | None = None):
        yield from ()

    registry = Registry([devices.motor, devices.det], [maybe])
    assert registry.validate("maybe", {"motor": None, "dets": None}).arguments == {
        "motor": None,
        "dets": None,
    }
    assert registry.validate("maybe", {"motor": "motor"}).arguments == {"motor": devices.motor}


def test_concrete_device_classes_are_checked_by_isinstance(devices):
    def home(axis: SynAxis):
        yield from ()

    registry = Registry([devices.motor, devices.det], [home])
    assert registry.validate("home", {"axis": "motor"}).arguments == {"axis": devices.motor}
    assert refusal(registry, "home", {"axis": "det"}) == (
        "home: argument 'axis': 'det' (SynGauss) is not an instance of SynAxis"
    )


def test_validated_plan_runs_in_a_run_engine(registry, devices, RE):
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    validated = registry.validate("scan", {**SCAN, "detectors": "det", "num": 4})
    assert isinstance(validated, ValidatedPlan)
    assert validated.name == "scan"
    RE(validated.make_generator())
    positions = [doc["data"]["motor"] for name, doc in docs if name == "event"]
    assert positions == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [doc["exit_status"] for name, doc in docs if name == "stop"] == ["success"]


def test_validated_plan_is_frozen(registry):
    validated = registry.validate("count", {"detectors": "det"})
    with pytest.raises(AttributeError):
        validated.name = "scan"  # type: ignore[misc]


# -- schema -----------------------------------------------------------------------------------


def test_json_schema_has_the_parameters_and_device_candidates(registry):
    schema = registry.json_schema("scan")
    json.dumps(schema)
    assert schema["title"] == "scan"
    assert schema["type"] == "object"
    assert list(schema["properties"]) == ["detectors", "motor", "start", "stop", "num"]
    assert schema["required"] == ["detectors", "motor", "start", "stop", "num"]
    assert schema["additionalProperties"] is False
    detectors = schema["properties"]["detectors"]
    assert detectors["type"] == "array"
    assert detectors["minItems"] == 1
    assert detectors["items"]["enum"] == ["det", "det1", "det2", "motor", "motor1", "motor2"]
    assert schema["properties"]["motor"]["enum"] == ["motor", "motor1", "motor2"]
    assert schema["properties"]["num"]["type"] == "integer"
    assert schema["properties"]["num"]["minimum"] == 1
    assert schema["properties"]["start"]["type"] == "number"
    assert "engineering units" in schema["properties"]["start"]["description"]


def test_json_schema_shows_defaults(registry):
    properties = registry.json_schema("count")["properties"]
    assert properties["num"]["default"] == 1
    assert properties["delay"]["default"] == 0.0
    assert "md" not in properties


def test_partial_plans_expose_only_the_unbound_parameters(devices):
    registry = Registry([devices.det], {"count5": functools.partial(DEFAULT_PLANS[0], num=5)})
    assert registry.plan_summary("count5").startswith("Read the detectors")
    assert registry.json_schema("count5")["properties"]["num"]["default"] == 5
    assert registry.validate("count5", {"detectors": "det"}).arguments == {
        "detectors": [devices.det]
    }


def test_fixed_length_lists_report_the_item(devices):
    def box(corner: tuple[float, float]):
        yield from ()

    registry = Registry([], [box])
    assert registry.validate("box", {"corner": [1, 2.5]}).arguments == {"corner": (1.0, 2.5)}
    assert refusal(registry, "box", {"corner": [1]}) == "box: argument 'corner' (item 1): missing"
    assert refusal(registry, "box", {"corner": [1, 2, 3]}).startswith(
        "box: argument 'corner': must have at most 2 item(s), got [1, 2, 3]"
    )
