"""The control room's files, generated without an IOC: screens, alarms, archiver list."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runengine_ioc import cli
from runengine_ioc.ca.catalogue import catalogue, form_entries
from runengine_ioc.ca.forms import form_class
from runengine_ioc.ca.server import RunEngineIOC
from runengine_ioc.engine.profile import build_setup
from runengine_ioc.panels import archiver
from runengine_ioc.panels.phoebus import WIDGET_VERSIONS
from runengine_ioc.panels.pydm import CUSTOM_WIDGETS

ROOT = Path(__file__).resolve().parents[3]
PROFILE = ROOT / "tests" / "integration" / "profile_for_tests.py"
SCHEMAS = ROOT / "tests" / "data" / "phoebus"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("panels")
    code = cli.main(
        ["panels", "--prefix", "BL01:RE:", "--out", str(out), "--profile", str(PROFILE)]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return build_setup(str(PROFILE), None).registry


def test_the_panels_subcommand_writes_a_screen_pair_per_plan_and_the_config_files(
    generated, registry
):
    expected = {"main", *(f"form_{plan}" for plan in registry.plan_names)}
    assert {p.stem for p in generated.glob("*.ui")} == expected
    assert {p.stem for p in generated.glob("*.bob")} == expected
    for name in ("alarms.xml", "archiver.json", "archiver-left-out.txt"):
        assert (generated / name).stat().st_size > 0


def test_ui_files_use_pydm_widgets_declared_as_custom_widgets(generated):
    for path in generated.glob("*.ui"):
        root = ET.parse(path).getroot()
        classes = {w.get("class") for w in root.iter("widget")}
        declared = {c.findtext("class") for c in root.iter("customwidget")}
        assert classes - {"QWidget", "QLabel"} == declared, path
        assert declared <= set(CUSTOM_WIDGETS), path
        for custom in root.iter("customwidget"):
            cls = custom.findtext("class")
            assert (custom.findtext("extends"), custom.findtext("header")) == CUSTOM_WIDGETS[cls]


def _channels(path: Path) -> dict[str, str]:
    """Widget name -> channel (without ca://${P}) of a .ui file."""
    found = {}
    for widget in ET.parse(path).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "channel":
                found[widget.get("name", "")] = (prop.findtext("string") or "").removeprefix(
                    "ca://${P}"
                )
    return found


def test_each_form_screen_has_a_typed_widget_per_parameter_and_a_start(generated, registry):
    entries = form_entries(registry, form_class)
    for plan in registry.plan_names:
        path = generated / f"form_{plan}.ui"
        root = ET.parse(path).getroot()
        by_channel = {
            channel: root.find(f".//widget[@name='{name}']").get("class")
            for name, channel in _channels(path).items()
        }
        assert by_channel[f"{plan}:Start"] == "PyDMPushButton"
        assert by_channel[f"{plan}:Queue"] == "PyDMPushButton"
        assert by_channel[f"{plan}:Doc"] == "PyDMLabel"
        for entry in entries:
            if not entry.name.startswith(f"{plan}:") or not entry.writable:
                continue
            if entry.name.endswith((":Start", ":Queue")):
                continue
            wanted = "PyDMEnumComboBox" if entry.record in ("mbbo", "bo") else "PyDMLineEdit"
            assert by_channel[entry.name] == wanted, entry


def test_main_screen_has_the_controls_the_plot_and_a_link_per_form(generated, registry):
    path = generated / "main.ui"
    channels = set(_channels(path).values())
    assert {"PlanName", "PlanArgs", "Start", "Pause", "Resume", "Stop", "Abort", "Halt"} <= channels
    assert {"State", "ExitStatus", "Status", "Progress", "ElapsedTime", "RemainingTime"} <= channels
    assert {"Stats:Cen", "Sinks:Status", "Diag:RSS", "Heartbeat"} <= channels
    root = ET.parse(path).getroot()
    curves = [json.loads(s.text) for s in root.findall(".//property[@name='curves']//string")]
    assert [c["y_channel"] for c in curves] == [f"ca://${{P}}Data:Y{i}" for i in range(1, 5)]
    assert {c["x_channel"] for c in curves} == {"ca://${P}Data:X"}
    links = {s.text for s in root.findall(".//property[@name='filenames']//string")}
    assert links == {f"form_{plan}.ui" for plan in registry.plan_names}


#: Phoebus's display model (app/display/model, commit 9bdac32), read by hand, independent of
#: the writer: the widget types used here with their model versions (Widget's base 2.0.0, or
#: the widget's own VERSION), and the properties each type defines that a writer may set.
_COMMON = {"name", "x", "y", "width", "height", "visible", "tooltip", "actions"}
_PV = _COMMON | {"pv_name", "border_alarm_sensitive"}
PHOEBUS_MODEL = {
    "label": ("2.0.0", _COMMON | {"text", "font", "foreground_color", "wrap_words"}),
    "textupdate": (
        "2.0.0",
        _PV | {"format", "precision", "show_units", "wrap_words", "vertical_alignment", "font"},
    ),
    "textentry": ("3.0.0", _PV | {"format", "precision", "show_units", "multi_line", "font"}),
    "action_button": ("3.0.0", _PV | {"text", "font"}),
    "combo": ("2.0.0", _PV | {"items", "items_from_pv", "editable"}),
    "led": ("2.0.0", _PV | {"bit", "labels_from_pv"}),
    "progressbar": ("2.0.0", _PV | {"limits_from_pv", "minimum", "maximum", "horizontal"}),
    "xyplot": ("3.0.0", _PV | {"title", "show_legend", "show_toolbar", "x_axis", "traces"}),
}
TRACE_PROPERTIES = {
    "name", "x_pv", "y_pv", "err_pv", "axis", "trace_type", "color", "line_width",
    "point_type", "point_size", "visible",
}  # fmt: skip


def test_bob_files_are_phoebus_displays_of_known_widgets(generated):
    assert {t: v for t, (v, _) in PHOEBUS_MODEL.items()} == WIDGET_VERSIONS
    for path in generated.glob("*.bob"):
        root = ET.parse(path).getroot()
        assert root.tag == "display" and root.get("version") == "2.0.0"
        assert root.findtext("macros/P") == "BL01:RE:"
        for widget in root.iter("widget"):
            version, properties = PHOEBUS_MODEL[widget.get("type")]
            assert widget.get("version") == version
            assert widget.findtext("name")
            assert {child.tag for child in widget} <= properties, widget.findtext("name")
        for trace in root.iter("trace"):
            assert {child.tag for child in trace} <= TRACE_PROPERTIES
        for pv in root.iter("pv_name"):
            assert pv.text == "$(pv_name)" or pv.text.startswith("$(P)"), path


def test_alarm_configuration_is_valid_against_phoebus_schema_as_its_reader_accepts(generated):
    etree = pytest.importorskip("lxml.etree")
    loosened = etree.XMLSchema(etree.parse(str(SCHEMAS / "alarm_configuration.loosened.xsd")))
    document = etree.parse(str(generated / "alarms.xml"))
    assert loosened.validate(document), loosened.error_log
    pvs = [pv.get("name") for pv in document.iter("pv")]
    names = ("State", "ExitStatus", "Sinks:Status", "Heartbeat", "Queue:State")
    assert pvs == [f"BL01:RE:{n}" for n in names]
    for pv in document.iter("pv"):
        assert pv.find("guidance/details").text and pv.find("display/details").text
        assert pv.find("display/details").text.endswith("main.bob")
    # the original cannot be used as is: it does not even compile ("details" undeclared)
    with pytest.raises(etree.XMLSchemaParseError):
        etree.XMLSchema(etree.parse(str(SCHEMAS / "alarm_configuration.xsd")))


def test_the_loosened_schema_still_rejects_what_the_reader_would_not_read():
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "alarm_configuration.loosened.xsd")))
    bad = [
        b'<config name="x"><pv name="a:b"/></config>',  # a pv outside any component
        b'<config name="x"><component name="c"><pv/></component></config>',  # no name
        b'<config name="x"><component name="c"><pv name="a"><latching>maybe</latching>'
        b"</pv></component></config>",
        b'<config name="x"><component name="c"><guidance><title>t</title></guidance>'
        b"</component></config>",  # guidance without details
    ]
    for text in bad:
        assert not schema.validate(etree.fromstring(text)), text


def test_archiver_list_monitors_events_scans_per_point_values_and_leaves_arrays_out(generated):
    listed = {e["pv"]: e for e in json.loads((generated / "archiver.json").read_text())}
    for name in ("State", "ExitStatus", "Status", "Heartbeat", "count:num"):
        assert listed[f"BL01:RE:{name}"]["samplingmethod"] == "MONITOR", name
    assert listed["BL01:RE:Progress"]["samplingmethod"] == "SCAN"
    assert listed["BL01:RE:Diag:RSS"]["samplingperiod"] == "10.0"
    assert not [pv for pv in listed if ":Data:" in pv]
    served = {e.name for e in catalogue(RunEngineIOC)}
    left_out = {p.name for p in archiver.left_out(catalogue(RunEngineIOC))}
    assert {f"BL01:RE:{n}" for n in served - left_out} <= set(listed)
    assert "Data:X" in left_out and "Data:Y1" in left_out
    notes = (generated / "archiver-left-out.txt").read_text()
    assert "BL01:RE:Data:X\t" in notes and "run files" in notes


def test_archiver_leaves_every_command_out_and_keeps_each_forms_args(generated, registry):
    listed = {e["pv"] for e in json.loads((generated / "archiver.json").read_text())}
    commands = [e for e in catalogue(RunEngineIOC) if archiver.is_command(e)]
    assert {"Start", "Abort", "Reload"} <= {e.name for e in commands}
    assert not {f"BL01:RE:{e.name}" for e in commands} & listed
    # a writable bo that is a setting (Off/On), not a momentary command, is archived
    assert "BL01:RE:Queue:Autostart" in listed
    for plan in registry.plan_names:
        assert f"BL01:RE:{plan}:Args" in listed
        assert f"BL01:RE:{plan}:Start" not in listed and f"BL01:RE:{plan}:Doc" not in listed


def test_the_panels_subcommand_refuses_a_broken_profile_and_writes_nothing(tmp_path, caplog):
    broken = tmp_path / "broken.py"
    broken.write_text("def build_profile(:\n")
    out = tmp_path / "out"
    assert cli.main(["panels", "--out", str(out), "--profile", str(broken)]) == 2
    assert not out.exists()
    assert "cannot write the screens" in caplog.text
    with pytest.raises(SystemExit):
        cli.main(["panels", "--prefix", "X:"])  # --out is required
