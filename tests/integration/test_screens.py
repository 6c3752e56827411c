"""The generated screens as a user sees them: every channel served, PyDM driving a plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runengine_ioc.panels.phoebus import WIDGET_VERSIONS

DRIVER = Path(__file__).with_name("pydm_driver.py")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def ui_channels(path: Path) -> set[str]:
    """Every PV a .ui file connects to: channel properties and the plot's curves."""
    root = ET.parse(path).getroot()
    found = set()
    for prop in root.iter("property"):
        if prop.get("name") == "channel":
            found.add(prop.findtext("string") or "")
        elif prop.get("name") == "curves":
            for text in prop.iter("string"):
                curve = json.loads(text.text or "{}")
                found.update({curve["x_channel"], curve["y_channel"]})
    return found


def bob_channels(path: Path) -> set[str]:
    """Every PV a .bob file connects to (widget pv_name, trace x_pv/y_pv, action pv_name)."""
    root = ET.parse(path).getroot()
    found = set()
    for widget in root.iter("widget"):
        own = widget.findtext("pv_name") or ""
        for tag in ("pv_name", "x_pv", "y_pv"):
            for element in widget.iter(tag):
                text = (element.text or "").replace("$(pv_name)", own)
                if text:
                    found.add(text)
    return found


def test_every_channel_of_every_screen_is_served(make_ioc, tmp_path):
    panels = tmp_path / "panels"
    ioc = make_ioc("--panels-dir", str(panels))
    ui_files = sorted(panels.glob("*.ui"))
    bob_files = sorted(panels.glob("*.bob"))
    assert [p.stem for p in ui_files] == [p.stem for p in bob_files]
    assert "main" in {p.stem for p in ui_files} and len(ui_files) > 2
    names: set[str] = set()
    for path in ui_files:
        channels = ui_channels(path)
        assert channels and all(re.fullmatch(r"ca://\$\{P\}[\w:]+", c) for c in channels), path
        names |= {c.removeprefix("ca://${P}") for c in channels}
    for path in bob_files:
        root = ET.parse(path).getroot()
        assert root.tag == "display" and root.findtext("macros/P") == ioc.prefix
        for widget in root.iter("widget"):
            assert WIDGET_VERSIONS[widget.get("type", "")] == widget.get("version"), path
        channels = bob_channels(path)
        assert channels and all(re.fullmatch(r"\$\(P\)[\w:]+", c) for c in channels), path
        names |= {c.removeprefix("$(P)") for c in channels}
    assert {"State", "Start", "Data:X", "Data:Y4", "Heartbeat", "count:num"} <= names
    pvs = [ioc.ca.pv(name) for name in sorted(names)]
    result = ioc.ca.run("caget", "-t", "-w", "3", *pvs, timeout=60)
    missing = [line for line in (result.stdout + result.stderr).splitlines() if "connect" in line]
    assert result.ok and not missing, missing


def test_pydm_opens_the_screens_and_runs_a_plan_through_them(make_ioc, tmp_path):
    pytest.importorskip("pydm")
    panels = tmp_path / "panels"
    ioc = make_ioc("--panels-dir", str(panels))
    env = dict(ioc.env, QT_QPA_PLATFORM="offscreen", PYDM_EPICS_LIB="PYEPICS")
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    artifacts = ARTIFACTS / "screens"
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(panels), ioc.prefix, str(artifacts)],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=os.getcwd(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["undeclared"] == [], result["undeclared"]
    assert result["connected"] and result["plan_selected"] and result["args_accepted"], result
    assert "running" in result["states"] and result["states"][-1] == "idle", result
    assert result["run_ended"] and result["progress"] == 100.0, result
    assert result["plot_points"] == 15, result
    assert result["plan_name_shown"] == "count", result
    assert '"num": 4' in result["form_args"], result
    assert "missing argument 'detectors'" in result["form_refusal"], result
    assert "running" in result["form_states"], json.dumps(result)
    assert ioc.ca.get("PlanCount") == "2"
    assert (artifacts / "pydm_main.png").stat().st_size > 10_000
    assert (artifacts / "pydm_form_count.png").stat().st_size > 5_000
