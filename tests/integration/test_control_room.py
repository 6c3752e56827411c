"""Heartbeat (counts over CA while healthy) and autosave (settings survive a restart)."""

from __future__ import annotations

import json

from tests.polling import wait_until


def test_heartbeat_counts_once_a_second(ioc):
    first = int(ioc.ca.get("Heartbeat"))
    later = wait_until(
        lambda: (n := int(ioc.ca.get("Heartbeat"))) >= first + 2 and n, 10, what="two beats"
    )
    assert later <= first + 6  # generous: about one a second, not faster
    assert ioc.ca.get_alarm("Heartbeat") == ("NO_ALARM", "NO_ALARM")
    assert ioc.ca.put("Heartbeat", 5).returncode != 0  # read-only


def test_settings_survive_a_restart_and_what_no_longer_fits_is_dropped(make_ioc, tmp_path):
    data = tmp_path / "shared-data"
    first = make_ioc(data_dir=data)
    arguments = {"detectors": ["det"], "num": 3}
    first.ca.configure("count", arguments, {"sample": "Si"})
    assert first.ca.put_ok("count:num", 7).ok
    assert first.ca.put_ok("scan:motor", "motor1").ok
    assert first.ca.put_ok("count:detectors", "det", string=True).ok
    saved = json.loads((data / "autosave.json").read_text())["values"]
    assert saved["PlanName"] == "count" and saved["count:num"] == 7
    first.stop()
    # as if the plans had changed meanwhile: a plan gone, a value out of new limits
    saved["gone:speed"] = 3.0
    saved["count:num"] = -2
    (data / "autosave.json").write_text(json.dumps({"format": 1, "values": saved}))
    second = make_ioc(data_dir=data)
    assert second.ca.get("PlanName") == "count"
    assert json.loads(second.ca.get_text("PlanArgs")) == arguments
    assert json.loads(second.ca.get_text("Metadata")) == {"sample": "Si"}
    assert second.ca.get("scan:motor") == "motor1"
    assert second.ca.get_text("count:detectors") == "det"
    assert second.ca.get("count:num") == "1"  # the form's default: -2 was dropped
    status = second.ca.get_text("Status")
    assert "autosave:" in status and "dropped" in status, status
    assert "gone:speed (no longer served)" in status and "count:num" in status, status
    kept = json.loads((data / "autosave.json").read_text())["values"]
    assert "gone:speed" not in kept and "count:num" not in kept and kept["scan:motor"] == "motor1"
    assert second.ca.put("Start", 1).ok  # the restored selection runs as it is
    assert second.ca.get("ExitStatus") == "success"


RELOADABLE = """
from collections.abc import Sequence

import bluesky.plans as bp
from bluesky.protocols import Readable

from runengine_ioc import DEFAULT_PLANS, Profile
from runengine_ioc.sim.profiles.sim import build_profile as sim


def dark_count(detectors: Sequence[Readable], repeats: int = 2{extra}):
    "Count with the shutter closed."
    yield from bp.count(detectors, num=repeats, md={{"dark": True}})


def build_profile():
    return Profile(devices=sim().devices, plans=[*DEFAULT_PLANS{plans}])
"""


def test_reload_rewrites_the_screens_and_gives_rebuilt_forms_their_saved_values(make_ioc, tmp_path):
    profile = tmp_path / "beamline.py"
    profile.write_text(RELOADABLE.format(extra="", plans=", dark_count"))
    panels = tmp_path / "panels"
    ioc = make_ioc("--panels-dir", str(panels), profile=str(profile))
    form = panels / "form_dark_count.ui"
    assert "dark_count:repeats" in form.read_text() and "gain" not in form.read_text()
    ioc.ca.put_ok("dark_count:repeats", 5)

    # a new parameter: the form is rebuilt, its screen rewritten, repeats put back
    profile.write_text(RELOADABLE.format(extra=", gain: float = 1.0", plans=", dark_count"))
    assert ioc.ca.put("Reload", 1).ok
    assert "dark_count:gain" in form.read_text()
    assert (panels / "form_dark_count.bob").read_text().count("$(P)dark_count:gain") == 1
    assert ioc.ca.get("dark_count:repeats") == "5"
    status = ioc.ca.get_text("Status")
    assert status.startswith("reloaded:") and "autosave: 1 value restored" in status, status

    # the plan removed: its screens go too
    profile.write_text(RELOADABLE.format(extra="", plans=""))
    assert ioc.ca.put("Reload", 1).ok
    assert not form.exists() and not (panels / "form_dark_count.bob").exists()
    assert "dark_count" not in (panels / "main.ui").read_text()
