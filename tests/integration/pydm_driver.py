"""Drive the generated PyDM screens headless, as an operator would, against a running IOC.

Run as a subprocess by test_screens.py (PyDM and libca are best kept out of the test process):
``python pydm_driver.py PANELS_DIR PREFIX ARTIFACTS_DIR``, with the IOC's CA environment and
``QT_QPA_PLATFORM=offscreen``. It opens main.ui, waits for its channels, selects ``count`` with
the plan's select button, types the arguments into the PlanArgs field and presses Return,
clicks Start, and records what the widgets show (the State label over time, the progress bar,
the plot's points); then it opens count's form screen, types ``num`` there and clicks that
form's Start. Screenshots go to ARTIFACTS_DIR; the observations are printed as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYDM_EPICS_LIB", "PYEPICS")

from pydm import PyDMApplication
from pydm.display import load_file
from pydm.widgets import (
    PyDMLabel,
    PyDMLineEdit,
    PyDMPushButton,
    PyDMScaleIndicator,
    PyDMWaveformPlot,
)
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QWidget

ARGS = {"detectors": ["det"], "num": 15, "delay": 0.04}


T0 = time.monotonic()
TIMES: list[float] = []


def pump(
    until: Callable[[], bool], timeout: float, record: Callable[[], None] | None = None
) -> bool:
    """Run Qt's event loop until ``until()`` holds (True) or the time is up (False)."""
    TIMES.append(round(time.monotonic() - T0, 2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if record is not None:
            record()
        if until():
            return True
        time.sleep(0.005)
    return False


def child(display: QWidget, cls: type, name: str) -> QWidget:
    found = display.findChild(cls, name)
    if found is None:
        raise SystemExit(f"no {cls.__name__} named {name!r} in the display")
    return found


def type_into(edit: PyDMLineEdit, text: str) -> None:
    """Select all, type the text, press Return: what an operator does in a line edit."""
    edit.setFocus()
    edit.selectAll()
    QTest.keyClicks(edit, text)
    QTest.keyClick(edit, Qt.Key_Return)


def undeclared_properties(display: QWidget) -> list[str]:
    """Properties the .ui set that the widget's class does not declare.

    Qt's loader turns an unknown ``stdset="0"`` property into a dynamic one, silently: a
    misspelt PyDM property would do nothing. PyDM itself sets none on these widgets.
    """
    found = []
    for widget in display.findChildren(QWidget):
        for name in widget.dynamicPropertyNames():
            text = bytes(name).decode()
            if not text.startswith("_q_"):
                found.append(f"{widget.objectName()}.{text}")
    return found


def click(button: QWidget) -> None:
    """A left click in the button, as the mouse gives it (focus moves to the button)."""
    QTest.mouseClick(button, Qt.LeftButton)


def main() -> int:
    panels, prefix, artifacts = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    artifacts.mkdir(parents=True, exist_ok=True)
    app = PyDMApplication(
        hide_nav_bar=True, hide_menu_bar=True, hide_status_bar=True, use_main_window=False
    )
    result: dict[str, object] = {}
    display = load_file(str(panels / "main.ui"), macros={"P": prefix}, target=None)
    display.show()
    display.activateWindow()
    result["undeclared"] = undeclared_properties(display)
    state = child(display, PyDMLabel, "State")
    plan_name = child(display, PyDMLineEdit, "PlanName")
    plan_args = child(display, PyDMLineEdit, "PlanArgs")
    start = child(display, PyDMPushButton, "btn_Start")
    progress = child(display, PyDMScaleIndicator, "Progress")
    plot = child(display, PyDMWaveformPlot, "plot")
    result["connected"] = pump(lambda: state.text() == "idle" and start.isEnabled(), 20)

    click(child(display, PyDMPushButton, "select_count"))
    # the field keeps what the operator may be typing while it has focus: read its value
    result["plan_selected"] = pump(lambda: plan_name.value == "count", 10)
    status = child(display, PyDMLabel, "Status")
    type_into(plan_args, json.dumps(ARGS))
    # Start reads PlanArgs as the IOC holds it: wait until the IOC says it took them
    result["args_accepted"] = pump(lambda: "arguments accepted for count" in status.text(), 10)
    seen: list[str] = []

    def record() -> None:
        if not seen or seen[-1] != state.text():
            seen.append(state.text())

    click(start)
    pump(lambda: "running" in seen, 10, record)
    ran = pump(lambda: "running" in seen and state.text() == "idle", 30, record)
    pump(lambda: progress.value == 100.0, 5)
    curve = plot._curves[0]

    def drawn() -> int:
        """Points the plot's first curve has drawn (not only received)."""
        _, y = curve.getData()
        return 0 if y is None else len(y)

    pump(lambda: drawn() == ARGS["num"], 5)
    result["states"] = seen
    result["run_ended"] = ran
    result["progress"] = progress.value
    result["plot_points"] = drawn()
    result["plan_name_shown"] = plan_name.text()
    display.grab().save(str(artifacts / "pydm_main.png"))

    form = load_file(str(panels / "form_count.ui"), macros={"P": prefix}, target=None)
    form.show()
    form.activateWindow()
    result["undeclared"] += undeclared_properties(form)
    num = child(form, PyDMLineEdit, "count_num")
    form_start = child(form, PyDMPushButton, "btn_Start")
    form_state = child(form, PyDMLabel, "State")
    args = child(form, PyDMLabel, "count_Args")
    result["form_connected"] = pump(lambda: form_state.text() == "idle" and num.text() != "", 20)
    type_into(num, "4")
    pump(lambda: '"num": 4' in args.text(), 10)
    result["form_args"] = args.text()
    form_seen: list[str] = []

    def record_form() -> None:
        if not form_seen or form_seen[-1] != form_state.text():
            form_seen.append(form_state.text())

    form_status = child(form, PyDMLabel, "Status")
    click(form_start)  # detectors (required) not given yet: refused, Status says why
    pump(lambda: "missing argument 'detectors'" in form_status.text(), 10)
    result["form_refusal"] = form_status.text()
    type_into(child(form, PyDMLineEdit, "count_detectors"), "det")
    pump(lambda: '"detectors"' in args.text(), 10)
    # a run of a few milliseconds can start and end between two looks at the label
    type_into(child(form, PyDMLineEdit, "count_delay"), "0.1")
    pump(lambda: '"delay": 0.1' in args.text(), 10)
    click(form_start)
    pump(lambda: "running" in form_seen and form_state.text() == "idle", 30, record_form)
    result["form_states"] = form_seen
    result["form_status"] = form_status.text()
    form.grab().save(str(artifacts / "pydm_form_count.png"))
    result["times"] = TIMES
    print(json.dumps(result))
    app.quit()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Qt's and libca's threads torn down at interpreter exit crash now and then (SIGSEGV after
    # every result was printed): the result is out, end here
    os._exit(code)
