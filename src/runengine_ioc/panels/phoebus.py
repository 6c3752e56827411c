"""Phoebus screens: display builder ``.bob`` XML, written from the same :class:`Screen`.

The format is Phoebus's display model as its own examples save it (``<display
version="2.0.0">``, one ``<widget type=... version=...>`` per widget, each property an element
named after it). Only widget types and properties that Phoebus's model defines are written
(:data:`WIDGET_VERSIONS`); PV names use the ``$(P)`` macro, whose default is the prefix the
screens were generated for (a display's ``<macros>``), so a launcher may pass another.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .screens import Screen, Widget

#: The widget types written, with the model version Phoebus saves them with.
WIDGET_VERSIONS = {
    "label": "2.0.0",
    "textupdate": "2.0.0",
    "textentry": "3.0.0",
    "action_button": "3.0.0",
    "combo": "2.0.0",
    "led": "2.0.0",
    "progressbar": "2.0.0",
    "xyplot": "3.0.0",
}

#: Phoebus's ``format`` property: 6 is STRING (a CHAR waveform shown as text).
FORMAT_STRING = "6"
#: The plot's trace colours (Y1..Y4), as RGB.
TRACE_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14))


def pv_name(pv: str) -> str:
    """The Phoebus PV name of a PV of the IOC (``$(P)State``)."""
    return f"$(P){pv}"


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = value
    return element


def _plain(text: str) -> str:
    """Phoebus labels are plain text: drop the <b> markup the PyDM labels use."""
    return text.replace("<b>", "").replace("</b>", "")


def _place(element: ET.Element, widget: Widget) -> None:
    for tag, value in (
        ("x", widget.x),
        ("y", widget.y),
        ("width", widget.width),
        ("height", widget.height),
    ):
        _text(element, tag, str(value))


def _action(parent: ET.Element, kind: str, **fields: str) -> None:
    actions = parent.find("actions")
    if actions is None:
        actions = ET.SubElement(parent, "actions")
    action = ET.SubElement(actions, "action", {"type": kind})
    for tag, value in fields.items():
        _text(action, tag, value)


def _widget(parent: ET.Element, widget: Widget) -> None:
    kind = widget.kind
    wtype = {
        "text": "label",
        "readback": "textupdate",
        "entry": "textentry",
        "button": "action_button",
        "choice": "combo",
        "led": "led",
        "progress": "progressbar",
        "plot": "xyplot",
        "link": "action_button",
    }[kind]
    element = ET.SubElement(parent, "widget", {"type": wtype, "version": WIDGET_VERSIONS[wtype]})
    _text(element, "name", widget.name)
    if widget.pv and kind != "plot":
        _text(element, "pv_name", pv_name(widget.pv))
    _place(element, widget)
    if kind == "text":
        _text(element, "text", _plain(widget.text))
        if widget.text.startswith("<b>"):
            font = ET.SubElement(element, "font")
            ET.SubElement(
                font, "font", {"family": "Liberation Sans", "style": "BOLD", "size": "14.0"}
            )
    elif kind in ("readback", "entry"):
        if widget.as_text:
            _text(element, "format", FORMAT_STRING)
        _text(element, "show_units", "true" if widget.units else "false")
        if kind == "readback":
            _text(element, "border_alarm_sensitive", "true" if widget.alarm else "false")
            if widget.height > 30:
                _text(element, "wrap_words", "true")
                _text(element, "vertical_alignment", "0")
        if widget.text:
            _text(element, "tooltip", widget.text)
    elif kind == "button":
        _text(element, "text", widget.text)
        _action(
            element,
            "write_pv",
            pv_name="$(pv_name)",
            value=widget.value,
            description=widget.text,
        )
    elif kind == "link":
        _text(element, "text", widget.text)
        _action(
            element,
            "open_display",
            file=f"{widget.target}.bob",
            target="tab",
            description=widget.text,
        )
    elif kind == "choice":
        _text(element, "items_from_pv", "true")
        if widget.text:
            _text(element, "tooltip", widget.text)
    elif kind == "progress":
        _text(element, "limits_from_pv", "false")
        _text(element, "minimum", "0.0")
        _text(element, "maximum", "100.0")
    elif kind == "plot":
        _text(element, "title", "Data:Y1..Y4 against Data:X")
        _text(element, "show_legend", "true")
        traces = ET.SubElement(element, "traces")
        for index, y in enumerate(widget.curves):
            trace = ET.SubElement(traces, "trace")
            _text(trace, "name", y)
            _text(trace, "x_pv", pv_name(widget.pv))
            _text(trace, "y_pv", pv_name(y))
            _text(trace, "err_pv", "")
            _text(trace, "axis", "0")
            _text(trace, "trace_type", "1")
            red, green, blue = TRACE_COLOURS[index % len(TRACE_COLOURS)]
            colour = ET.SubElement(trace, "color")
            ET.SubElement(
                colour, "color", {"red": str(red), "green": str(green), "blue": str(blue)}
            )
            _text(trace, "line_width", "1")
            _text(trace, "point_type", "2")
            _text(trace, "point_size", "5")
            _text(trace, "visible", "true")


def render(screen: Screen, prefix: str) -> str:
    """The ``.bob`` file of a screen; ``prefix`` is the default of the ``P`` macro."""
    display = ET.Element("display", {"version": "2.0.0"})
    _text(display, "name", screen.title)
    macros = ET.SubElement(display, "macros")
    _text(macros, "P", prefix)
    _text(display, "width", str(screen.width))
    _text(display, "height", str(screen.height))
    for widget in screen.widgets:
        _widget(display, widget)
    ET.indent(display, space="  ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(display, encoding="unicode") + "\n"
    )
