"""PyDM screens: Qt Designer ``.ui`` XML with PyDM's widget classes.

PyDM loads a ``.ui`` file with Qt's own loader, so the file is what Qt Designer would save: a
``QWidget`` form holding the widgets at fixed geometries, PyDM's widgets declared as custom
widgets (class, base class, module), and their properties as Designer writes them (the
PyDM-specific ones with ``stdset="0"``). Channels are ``ca://${P}<name>``; PyDM replaces the
macro when the file is opened (``pydm -m 'P=BL01:RE:' main.ui``) and passes it on to the
screens the related-display buttons open.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from .screens import Screen, Widget

#: PyDM's widget classes used here: (base class, module), as PyDM's Designer plugins declare.
CUSTOM_WIDGETS = {
    "PyDMLabel": ("QLabel", "pydm.widgets.label"),
    "PyDMLineEdit": ("QLineEdit", "pydm.widgets.line_edit"),
    "PyDMPushButton": ("QPushButton", "pydm.widgets.pushbutton"),
    "PyDMEnumComboBox": ("QComboBox", "pydm.widgets.enum_combo_box"),
    "PyDMByteIndicator": ("QWidget", "pydm.widgets.byte"),
    "PyDMScaleIndicator": ("QFrame", "pydm.widgets.scale"),
    "PyDMWaveformPlot": ("QGraphicsView", "pydm.widgets.waveformplot"),
    "PyDMRelatedDisplayButton": ("QPushButton", "pydm.widgets.related_display_button"),
}

#: The plot's trace colours (Y1..Y4).
CURVE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e")


def channel(pv: str) -> str:
    """The PyDM address of a PV of the IOC (``ca://${P}State``)."""
    return f"ca://${{P}}{pv}"


def _property(parent: ET.Element, name: str, kind: str, value: str, stdset: bool = True) -> None:
    prop = ET.SubElement(
        parent, "property", {"name": name} if stdset else {"name": name, "stdset": "0"}
    )
    ET.SubElement(prop, kind).text = value


def _string_list(parent: ET.Element, name: str, values: list[str]) -> None:
    prop = ET.SubElement(parent, "property", {"name": name, "stdset": "0"})
    strings = ET.SubElement(prop, "stringlist")
    for value in values:
        ET.SubElement(strings, "string").text = value


def _geometry(parent: ET.Element, widget: Widget) -> None:
    prop = ET.SubElement(parent, "property", {"name": "geometry"})
    rect = ET.SubElement(prop, "rect")
    for tag, value in (
        ("x", widget.x),
        ("y", widget.y),
        ("width", widget.width),
        ("height", widget.height),
    ):
        ET.SubElement(rect, tag).text = str(value)


def _curve(index: int, y_pv: str, x_pv: str) -> str:
    return json.dumps(
        {
            "y_channel": channel(y_pv),
            "x_channel": channel(x_pv),
            "name": y_pv,
            "color": CURVE_COLOURS[index % len(CURVE_COLOURS)],
            "lineStyle": 1,
            "lineWidth": 1,
            "symbol": "o",
            "symbolSize": 5,
            "redraw_mode": 2,
        }
    )


def _widget(parent: ET.Element, widget: Widget) -> str:
    """Add one widget; return its class."""
    kind = widget.kind
    cls = {
        "text": "QLabel",
        "readback": "PyDMLabel",
        "entry": "PyDMLineEdit",
        "button": "PyDMPushButton",
        "choice": "PyDMEnumComboBox",
        "led": "PyDMByteIndicator",
        "progress": "PyDMScaleIndicator",
        "plot": "PyDMWaveformPlot",
        "link": "PyDMRelatedDisplayButton",
    }[kind]
    element = ET.SubElement(parent, "widget", {"class": cls, "name": widget.name})
    _geometry(element, widget)
    if widget.pv and kind != "plot":
        _property(element, "channel", "string", channel(widget.pv), stdset=False)
        if widget.text and kind in ("entry", "choice", "readback"):
            _property(element, "toolTip", "string", widget.text)
    if kind == "text":
        _property(element, "text", "string", widget.text)
        _property(element, "wordWrap", "bool", "true")
    elif kind in ("readback", "entry"):
        if widget.as_text:
            _property(element, "displayFormat", "enum", f"{cls}::String", stdset=False)
        if widget.units:
            _property(element, "showUnits", "bool", "true", stdset=False)
        if widget.alarm:
            _property(element, "alarmSensitiveContent", "bool", "true", stdset=False)
            _property(element, "alarmSensitiveBorder", "bool", "true", stdset=False)
        if kind == "readback" and widget.height > 30:
            _property(element, "wordWrap", "bool", "true")
            _property(element, "alignment", "set", "Qt::AlignLeading|Qt::AlignLeft|Qt::AlignTop")
    elif kind == "button":
        _property(element, "text", "string", widget.text)
        _property(element, "pressValue", "string", widget.value, stdset=False)
    elif kind == "led":
        _property(element, "showLabels", "bool", "false", stdset=False)
        _property(element, "numBits", "number", "1", stdset=False)
    elif kind == "progress":
        _property(element, "barIndicator", "bool", "true", stdset=False)
        _property(element, "showValue", "bool", "false", stdset=False)
        _property(element, "showTicks", "bool", "false", stdset=False)
        _property(element, "showLimits", "bool", "false", stdset=False)
        _property(element, "limitsFromChannel", "bool", "false", stdset=False)
        _property(element, "userLowerLimit", "double", "0.0", stdset=False)
        _property(element, "userUpperLimit", "double", "100.0", stdset=False)
    elif kind == "plot":
        _string_list(
            element, "curves", [_curve(i, y, widget.pv) for i, y in enumerate(widget.curves)]
        )
        _property(element, "showLegend", "bool", "true", stdset=False)
    elif kind == "link":
        _property(element, "text", "string", widget.text)
        _string_list(element, "filenames", [f"{widget.target}.ui"])
        _string_list(element, "titles", [widget.text])
        _property(element, "openInNewWindow", "bool", "true", stdset=False)
    return cls


def render(screen: Screen) -> str:
    """The ``.ui`` file of a screen."""
    ui = ET.Element("ui", {"version": "4.0"})
    ET.SubElement(ui, "class").text = "Form"
    form = ET.SubElement(ui, "widget", {"class": "QWidget", "name": "Form"})
    _geometry(form, Widget("text", "Form", 0, 0, screen.width, screen.height))
    _property(form, "windowTitle", "string", screen.title)
    used = {_widget(form, widget) for widget in screen.widgets if widget.pydm}
    customs = ET.SubElement(ui, "customwidgets")
    for cls in sorted(used & set(CUSTOM_WIDGETS)):
        extends, header = CUSTOM_WIDGETS[cls]
        custom = ET.SubElement(customs, "customwidget")
        ET.SubElement(custom, "class").text = cls
        ET.SubElement(custom, "extends").text = extends
        ET.SubElement(custom, "header").text = header
    ET.SubElement(ui, "resources")
    ET.SubElement(ui, "connections")
    ET.indent(ui, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(ui, encoding="unicode") + "\n"
