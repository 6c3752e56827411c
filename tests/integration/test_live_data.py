"""Live data over Channel Access: Data:X/Y grow during a run, match the saved documents;
peak statistics at the end of a 1-D scan."""

from __future__ import annotations

import math

import pytest

from runengine_ioc.data.files import run_table

from .ca_tools import monitor_values


def array_updates(output: str, suffix: str) -> list[list[float]]:
    """Arrays in camonitor output (`PV  N v1 v2 ...`; an empty array prints nothing)."""
    arrays = []
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0].endswith(suffix):
            arrays.append([float(v) for v in parts[2:]] if len(parts) > 2 else [])
    return arrays


def texts(output: str, suffix: str) -> str:
    """The lines of a long-string PV in camonitor output (printed as character codes)."""
    return "\n".join(
        bytes(int(v) for v in values).decode(errors="replace")
        for values in array_updates(output, suffix)
    )


def get_array(ioc, suffix: str) -> list[float]:  # type: ignore[no-untyped-def]
    count = int(ioc.ca.get("Data:NumPoints"))
    fields = ioc.ca.get(suffix, "-#", str(max(count, 1))).split()
    return [float(v) for v in fields[1 : 1 + count]]


def test_data_x_and_y1_grow_point_by_point_and_end_equal_to_the_saved_run(ioc):
    monitor = ioc.ca.monitor("Data:X", "Data:Y1", "State")
    ioc.ca.wait_for("State", "idle")
    ioc.ca.configure("count", {"detectors": ["det"], "num": 40, "delay": 0.03})
    assert ioc.ca.put("Start", 1).ok
    output = monitor.finish(until=lambda out: monitor_values(out, ":State")[-1:] == ["idle"])
    xs = [a for a in array_updates(output, ":Data:X") if a]
    ys = [a for a in array_updates(output, ":Data:Y1") if a]
    lengths = [len(x) for x in xs]
    assert len(set(lengths)) >= 3, lengths  # seen growing, not only at the end
    assert lengths == sorted(lengths)
    (saved,) = ioc.runs()
    table = run_table(saved)
    assert xs[-1] == [float(i) for i in table.index]
    assert ys[-1] == pytest.approx(list(table["det"]), rel=1e-5)
    assert ioc.ca.get("Data:XName") == "seq_num"
    assert ioc.ca.get("Data:Y1Name") == "det"
    assert ioc.ca.get("Data:NumPoints") == "40"
    assert ioc.ca.get("Data:X.NORD") == "40"


def test_a_scan_shows_the_motor_and_detectors_by_name_and_the_last_event(ioc):
    ioc.ca.configure(
        "scan", {"detectors": ["det", "det1"], "motor": "motor", "start": -1, "stop": 1, "num": 5}
    )
    assert ioc.ca.put("Start", 1).ok
    (saved,) = ioc.runs()
    table = run_table(saved)
    assert [ioc.ca.get(f"Data:{n}Name") for n in ("X", "Y1", "Y2", "Y3")] == [
        "motor",
        "det",
        "det1",
        "",
    ]
    assert get_array(ioc, "Data:X") == list(table["motor"])
    assert get_array(ioc, "Data:Y2") == pytest.approx(list(table["det1"]), rel=1e-5)
    last = ioc.ca.get_text("Data:LastEvent")
    assert '"motor": 1.0' in last and '"det1"' in last


def test_peak_statistics_of_a_scan_over_the_gaussian_are_within_one_step_of_its_centre(ioc):
    start, stop, num = -5.0, 5.0, 41
    step = (stop - start) / (num - 1)
    ioc.ca.configure(
        "scan", {"detectors": ["det"], "motor": "motor", "start": start, "stop": stop, "num": num}
    )
    assert ioc.ca.put("Start", 1).ok
    assert abs(float(ioc.ca.get("Stats:Cen"))) <= step
    assert abs(float(ioc.ca.get("Stats:Com"))) <= step
    assert abs(float(ioc.ca.get("Stats:MaxPos"))) <= step
    assert float(ioc.ca.get("Stats:Max")) == pytest.approx(1.0)
    assert abs(float(ioc.ca.get("Stats:Fwhm")) - 2 * math.sqrt(2 * math.log(2))) <= step
    assert ioc.ca.get_alarm("Stats:Cen") == ("NO_ALARM", "NO_ALARM")
    assert (ioc.ca.get("Stats:Detector"), ioc.ca.get("Stats:Motor")) == ("det", "motor")
    # a count has no peak statistics: undefined, INVALID
    ioc.ca.configure("count", {"detectors": ["det"], "num": 2})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("Stats:Cen").lower() == "nan"
    assert ioc.ca.get_alarm("Stats:Cen")[0] == "INVALID"


def test_the_next_run_starts_from_empty_arrays(ioc):
    monitor = ioc.ca.monitor("Data:NumPoints")
    ioc.ca.configure("count", {"detectors": ["det"], "num": 5})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.put("Start", 1).ok
    output = monitor.finish(until=lambda out: monitor_values(out, "NumPoints").count("5") == 2)
    values = [int(v) for v in monitor_values(output, "NumPoints")]
    assert values[0] == 0 and values.count(5) == 2
    second = values[values.index(5) + 1 :]
    assert second[0] == 0, values  # reset when the second run opened


def test_a_run_longer_than_the_capacity_keeps_the_most_recent_points_and_says_so(make_ioc):
    ioc = make_ioc("--data-capacity", "20")
    monitor = ioc.ca.monitor("Status")
    ioc.ca.configure("count", {"detectors": ["det"], "num": 50})
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("Data:NumPoints") == "20"
    assert ioc.ca.get("Data:X.NELM") == "20"
    assert get_array(ioc, "Data:X") == [float(i) for i in range(31, 51)]
    lines = monitor.finish(until=lambda out: "data-capacity" in texts(out, ":Status"))
    assert "keep the most recent 20 points" in texts(lines, ":Status")
