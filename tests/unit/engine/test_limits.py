"""Limits checked before anything runs: a plan's size, reserved names, start-document metadata."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import bluesky.plans as bp
import pytest
from bluesky.protocols import Readable

from runengine_ioc.engine.annotations import PointFactor
from runengine_ioc.engine.metadata import (
    IOC_METADATA_KEYS,
    MAX_METADATA_DEPTH,
    RESERVED_METADATA_KEYS,
    validate_metadata,
)
from runengine_ioc.engine.profile import ProfileError, build_setup
from runengine_ioc.engine.registry import (
    DEFAULT_MAX_POINTS,
    RESERVED_PARAMETER_NAMES,
    ArgumentError,
    Registry,
)
from runengine_ioc.plans import DEFAULT_PLANS, MsgGenerator

from ..conftest import MakeWorker

DETS = {"detectors": ["det"]}
SCAN = {**DETS, "motor": "motor", "start": 0, "stop": 1}
GRID = {
    **DETS,
    "motor1": "motor1",
    "start1": 0,
    "stop1": 1,
    "motor2": "motor2",
    "start2": 0,
    "stop2": 1,
}

made: list[str] = []


def recorded(
    detectors: Sequence[Readable],
    rows: Annotated[int, PointFactor()] = 2,
    cols: Annotated[int | None, PointFactor()] = None,
    label: str = "",
) -> MsgGenerator:
    """A plan that notes when its generator is made (it must not be, for a refused size)."""
    made.append(label)
    return (yield from bp.count(list(detectors), num=rows * (cols or 1)))


def unmarked(detectors: Sequence[Readable], num: int = 1) -> MsgGenerator:
    """No PointFactor: the IOC does not know its size and does not bound it."""
    return (yield from bp.count(list(detectors), num=num))


@pytest.fixture
def registry(devices: SimpleNamespace) -> Registry:
    d = devices
    plans = (*DEFAULT_PLANS, recorded, unmarked)
    return Registry([d.det, d.motor, d.motor1, d.motor2], plans, max_points=1000)


# -- the size of a plan ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "arguments", "points"),
    [
        ("count", DETS, 1),
        ("count", {**DETS, "num": 7}, 7),
        ("scan", {**SCAN, "num": 5}, 5),
        ("rel_scan", {**SCAN, "num": 6}, 6),
        ("list_scan", {**DETS, "motor": "motor", "positions": [1, 2, 3]}, 3),
        ("grid_scan", {**GRID, "num1": 3, "num2": 4}, 12),
        ("rel_grid_scan", {**GRID, "num1": 5, "num2": 2}, 10),
        ("recorded", DETS, 2),
        ("recorded", {**DETS, "rows": 3, "cols": 5}, 15),
        ("mv", {"device": "motor", "position": 1}, None),
        ("unmarked", {**DETS, "num": 10**9}, None),
    ],
)
def test_points_is_the_product_of_the_marked_parameters(registry, plan, arguments, points):
    assert registry.points(plan, arguments) == points


@pytest.mark.parametrize(
    ("plan", "arguments", "message"),
    [
        ("scan", {**SCAN, "num": 2**31 - 1}, r"2147483647 points \(num 2147483647\)"),
        ("count", {**DETS, "num": 1001}, r"1001 points \(num 1001\)"),
        ("grid_scan", {**GRID, "num1": 20000, "num2": 20000}, r"num1 20000 x num2 20000"),
        ("list_scan", {**DETS, "motor": "motor", "positions": [0] * 1001}, "1001 positions"),
        ("recorded", {**DETS, "rows": 100, "cols": 11}, "1100 points"),
    ],
)
def test_a_plan_beyond_max_points_is_refused_before_its_generator_is_made(
    registry, plan, arguments, message
):
    made.clear()
    with pytest.raises(ArgumentError, match=message) as refused:
        registry.validate(plan, arguments)
    assert "at most 1000 points" in str(refused.value)
    assert made == []


def test_the_limit_itself_is_accepted_and_unmarked_plans_are_not_bounded(registry):
    registry.validate("count", {**DETS, "num": 1000})
    registry.validate("grid_scan", {**GRID, "num1": 10, "num2": 100})
    registry.validate("unmarked", {**DETS, "num": 10**9})
    assert Registry([], DEFAULT_PLANS).max_points == DEFAULT_MAX_POINTS == 1_000_000


def test_a_form_field_is_checked_with_the_forms_other_values(registry):
    registry.check_argument("grid_scan", "num2", 100, {"num1": 10})
    with pytest.raises(ArgumentError, match=r"1010 points \(num1 10 x num2 101\)"):
        registry.check_argument("grid_scan", "num2", 101, {"num1": 10})
    with pytest.raises(ArgumentError, match="1001 points"):
        registry.check_argument("grid_scan", "num1", 1001)  # alone
    registry.check_argument("grid_scan", "start1", 1e9, {"num1": 10**6})  # not a factor


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_max_points_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_points"):
        Registry([], DEFAULT_PLANS, max_points=bad)


# -- reserved parameter names ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RESERVED_PARAMETER_NAMES))
def test_a_parameter_named_like_a_form_pv_is_refused(name):
    namespace: dict[str, Any] = {}
    exec(f"def plan({name}: int = 1):\n    yield from ()\n", namespace)
    with pytest.raises(TypeError, match=f"parameter '{name}' has the name of one of its form"):
        Registry([], [namespace["plan"]])


# -- profiles ----------------------------------------------------------------------------

PROFILE = """
from runengine_ioc import DEFAULT_PLANS, Profile

def build_profile():
    return Profile(plans=DEFAULT_PLANS, metadata={{"beamline_id": "T"}}, max_points={limit})
"""


@pytest.mark.parametrize(
    ("profile_limit", "cli_limit", "applies"),
    [("None", 50, 50), ("20", 50, 20), ("500", 50, 50)],
)
def test_the_smaller_of_the_profile_and_ioc_limits_applies(
    tmp_path: Path, profile_limit, cli_limit, applies
):
    path = tmp_path / "profile.py"
    path.write_text(PROFILE.format(limit=profile_limit))
    setup = build_setup(str(path), max_points=cli_limit)
    assert setup.registry.max_points == applies
    assert setup.registry.metadata_keys == {"beamline_id"}


@pytest.mark.parametrize(("limit", "message"), [("0", "at least 1"), ("'many'", "an integer")])
def test_a_bad_profile_limit_refuses_the_profile(tmp_path: Path, limit, message):
    path = tmp_path / "profile.py"
    path.write_text(PROFILE.format(limit=limit))
    with pytest.raises(ProfileError, match=message):
        build_setup(str(path))


def test_a_profile_with_a_reserved_parameter_name_is_refused_as_a_whole(tmp_path: Path):
    path = tmp_path / "profile.py"
    path.write_text(
        "from runengine_ioc import DEFAULT_PLANS, Profile\n"
        "def doc_plan(Doc: str = ''):\n    yield from ()\n"
        "def build_profile():\n    return Profile(plans=[*DEFAULT_PLANS, doc_plan])\n"
    )
    with pytest.raises(ProfileError, match="parameter 'Doc'"):
        build_setup(str(path))


# -- metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    sorted(
        {"num_points", "plan_args", "detectors", "motors", "hints", "versions", "plan_name"}
        | {"uid", "time", "scan_id", "plan_type", "plan_pattern", "num_intervals"}
    ),
)
def test_every_key_the_plan_or_the_run_engine_sets_is_refused(key):
    assert key in RESERVED_METADATA_KEYS
    with pytest.raises(ArgumentError, match=f"Metadata may not set {key} \\(set by the"):
        validate_metadata({"sample": "Si", key: 1})


def test_the_profiles_and_the_iocs_keys_are_refused_and_named():
    with pytest.raises(ArgumentError, match=r"beamline_id \(set by the profile\)"):
        validate_metadata({"beamline_id": "X"}, {"beamline_id"})
    with pytest.raises(
        ArgumentError,
        match=r"num_points \(set by the plan\); started_by \(set by the IOC\)",
    ):
        validate_metadata({"num_points": 3, "started_by": "me"})
    # the IOC's own key, added by the IOC on the way to the worker, passes there
    assert {"started_by"} == IOC_METADATA_KEYS
    assert validate_metadata({"started_by": {"user": "u"}}, client=False)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"x": math.nan}, "nan is not a finite number"),
        ({"x": {"y": [1.0, -math.inf]}}, r"'x.y\[1\]': -inf is not a finite number"),
        ({"x": 2**63}, "beyond 64 bits"),
        ({"x": object()}, "a object is not JSON"),
        ({"x": {1: 2}}, "keys must be strings"),
        ({"a.b": 1}, "key 'a.b'"),
        ({"": 1}, "key ''"),
        ({"data_groups": "g"}, "data_groups: 'g' is not of type 'array'"),
        ({"sample": 5}, "sample"),
        ({"scan_id": 1}, "set by the RunEngine"),
    ],
)
def test_metadata_that_cannot_be_saved_or_that_the_schema_rejects_is_refused(metadata, message):
    with pytest.raises(ArgumentError, match=message):
        validate_metadata(metadata)


def test_nesting_is_bounded():
    deep: Any = "leaf"
    for _ in range(MAX_METADATA_DEPTH - 1):
        deep = [deep]
    assert validate_metadata({"x": deep})
    with pytest.raises(ArgumentError, match=f"nested deeper than {MAX_METADATA_DEPTH}"):
        validate_metadata({"x": [deep]})


def test_ordinary_metadata_passes_unchanged():
    metadata = {"sample": {"name": "Si", "T": 4.2}, "data_groups": ["p1"], "note": None, "n": 3}
    assert validate_metadata(metadata) == metadata


# -- at Start (the worker) ---------------------------------------------------------------


def test_the_worker_refuses_a_plan_too_big_and_the_profiles_keys_before_anything_runs(
    make_worker: MakeWorker, devices: SimpleNamespace
):
    events: list[Any] = []
    docs: list[tuple[str, dict]] = []
    d = devices
    registry = Registry(
        [d.det], (*DEFAULT_PLANS, recorded), max_points=10, metadata_keys={"beamline_id"}
    )
    worker = make_worker(
        registry,
        events.append,
        callbacks=[lambda name, doc: docs.append((name, doc))],
        metadata={"beamline_id": "T"},
    )
    made.clear()
    with pytest.raises(ArgumentError, match="11 points"):
        worker.submit("recorded", {**DETS, "rows": 11}, {})
    with pytest.raises(ArgumentError, match=r"beamline_id \(set by the profile\)"):
        worker.submit("count", DETS, {"beamline_id": "FAKE"})
    with pytest.raises(ArgumentError, match=r"detectors \(set by the plan\)"):
        worker.submit("count", DETS, {"detectors": ["FAKE"]})
    assert made == [] and events == [] and docs == []
    assert not worker.busy
