"""What the screens show, laid out once and written for both PyDM and Phoebus.

A :class:`Screen` is a list of :class:`Widget` at fixed places; :mod:`.pydm` and
:mod:`.phoebus` only translate each kind of widget into their own XML. Both therefore show the
same PVs in the same places, and a test that reads the channels back from either file checks
both. Channels are PV names *without* the IOC's prefix: each writer adds its own macro
(``${P}`` in PyDM, ``$(P)`` in Phoebus), so one file serves any prefix.

The main screen is built from the PV catalogue (what the IOC serves), the form screens from
each plan's form entries and parameter descriptions (units, limits, enum states, Doc, Start).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..ca.catalogue import CatalogueEntry
from ..engine.registry import ParameterInfo

#: What a widget is, for the writers:
#: ``text`` a static label; ``readback`` a PV's value; ``entry`` a PV typed into;
#: ``button`` writes ``value`` to the PV; ``choice`` an enum PV's drop-down; ``led`` an
#: enum/bi PV as a lamp; ``progress`` a bar from 0 to 100; ``plot`` X against Ys;
#: ``link`` opens another screen (``target``, without extension).
Kind = Literal["text", "readback", "entry", "button", "choice", "led", "progress", "plot", "link"]

#: The main screen's file name (without extension).
MAIN = "main"
#: The height of a row of widgets, in pixels.
ROW = 26
#: The Y traces of the live plot.
PLOT_CURVES = ("Data:Y1", "Data:Y2", "Data:Y3", "Data:Y4")


@dataclass(frozen=True)
class Widget:
    """One widget at a fixed place.

    Attributes
    ----------
    kind
        What it is (:data:`Kind`).
    name
        Unique within its screen (a Qt object name, a Phoebus widget name).
    x, y, width, height
        Where, in pixels.
    pv
        The PV after the prefix (``State``), ``""`` for none; for a plot, the X array.
    text
        A label's text, a button's caption, a tooltip for PV widgets.
    value
        What a button writes.
    alarm
        Colour the value by its alarm severity.
    as_text
        A CHAR waveform shown and typed as text (JSON, messages).
    units
        Show the PV's engineering units.
    curves
        A plot's Y arrays.
    target
        A link's screen (file name without extension).
    pydm
        Written to the PyDM screen too (PyDM's pyepics plugin cannot carry a string array).
    """

    kind: Kind
    name: str
    x: int
    y: int
    width: int
    height: int = ROW - 4
    pv: str = ""
    text: str = ""
    value: str = ""
    alarm: bool = False
    as_text: bool = False
    units: bool = False
    curves: tuple[str, ...] = ()
    target: str = ""
    pydm: bool = True

    def channels(self) -> list[str]:
        """Every PV this widget connects to (without the prefix)."""
        return [name for name in (self.pv, *self.curves) if name]


@dataclass
class Screen:
    """One display: a title, a size and its widgets."""

    name: str
    title: str
    width: int
    height: int
    widgets: list[Widget] = field(default_factory=list)

    def add(self, widget: Widget) -> Widget:
        if any(w.name == widget.name for w in self.widgets):
            raise ValueError(f"screen {self.name}: two widgets named {widget.name!r}")
        self.widgets.append(widget)
        self.height = max(self.height, widget.y + widget.height + 10)
        return widget

    def channels(self) -> set[str]:
        return {pv for widget in self.widgets for pv in widget.channels()}


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


Cell = tuple[Kind, str, dict[str, object]]


def cell(kind: Kind, pv: str, **options: object) -> Cell:
    """One widget of a row: its kind, its PV and the rest of :class:`Widget`'s fields."""
    return (kind, pv, options)


class _Column:
    """Rows placed one under another: a caption on the left, widgets on the right."""

    def __init__(self, screen: Screen, x: int, y: int, width: int, caption: int = 110) -> None:
        self.screen = screen
        self.x = x
        self.y = y
        self.width = width
        self.caption = caption

    def heading(self, text: str) -> None:
        self.screen.add(
            Widget(
                "text",
                f"head_{_ident(text)}",
                self.x,
                self.y,
                self.width,
                22,
                text=f"<b>{text}</b>",
            )
        )
        self.y += ROW

    def row(self, caption: str, *widgets: Cell, height: int = ROW - 4) -> None:
        """A caption, then the widgets side by side in the rest of the width."""
        self.screen.add(
            Widget(
                "text",
                f"cap_{_ident(caption)}_{self.y}",
                self.x,
                self.y,
                self.caption - 6,
                22,
                text=caption,
            )
        )
        room = self.width - self.caption
        each = (room - 6 * (len(widgets) - 1)) // max(1, len(widgets))
        for index, (kind, pv, options) in enumerate(widgets):
            name = str(options.pop("name", _ident(pv) or f"w{self.y}_{index}"))
            self.screen.add(
                Widget(
                    kind,
                    name,
                    self.x + self.caption + index * (each + 6),
                    self.y,
                    each,
                    height,
                    pv=pv,
                    **options,  # type: ignore[arg-type]
                )
            )
        self.y += height + 4


def _served(entries: Iterable[CatalogueEntry]) -> dict[str, CatalogueEntry]:
    return {entry.name: entry for entry in entries}


def main_screen(entries: Sequence[CatalogueEntry], plans: Sequence[str]) -> Screen:
    """The operator's screen: choose and run a plan, watch it, plot it, open the forms.

    Only PVs in ``entries`` (the catalogue) are shown, so the screen never names a PV the IOC
    does not serve.
    """
    served = _served(entries)
    screen = Screen(MAIN, "RunEngine IOC", 1010, 200)

    def have(*names: str) -> bool:
        return all(name in served for name in names)

    left = _Column(screen, 10, 10, 480, caption=170)
    screen.add(Widget("text", "title", 10, 10, 990, 26, text="<b>RunEngine IOC</b>"))
    left.y = 44
    left.heading("Plan")
    left.row("PlanName", ("entry", "PlanName", {"text": served["PlanName"].meaning}))
    left.row("PlanDoc", ("readback", "PlanDoc", {"as_text": True}), height=44)
    left.row("PlanArgs", ("entry", "PlanArgs", {"as_text": True}))
    left.row("Metadata", ("entry", "Metadata", {"as_text": True}))
    commands = [c for c in ("Start", "Pause", "Resume", "Stop", "Abort", "Halt") if have(c)]
    left.row(
        "Commands",
        *(cell("button", c, value="1", text=c, name=f"btn_{c}") for c in commands),
    )
    left.heading("Run")
    left.row(
        "State",
        ("readback", "State", {"alarm": True}),
        ("readback", "ExitStatus", {"alarm": True}),
        ("led", "Busy", {}),
    )
    left.row("Status", ("readback", "Status", {"as_text": True, "alarm": True}), height=44)
    left.row(
        "Progress",
        ("progress", "Progress", {}),
        ("readback", "Progress", {"units": True, "name": "ProgressValue"}),
    )
    left.row("Points", ("readback", "CurrentPoint", {}), ("readback", "TotalPoints", {}))
    left.row(
        "Time",
        ("readback", "ElapsedTime", {"units": True}),
        ("readback", "RemainingTime", {"units": True}),
    )
    left.row("Scan", ("readback", "ScanId", {}), ("readback", "RunUid", {}))
    stats = [e.name for e in entries if e.name.startswith("Stats:")]
    if stats:
        left.heading("Peak statistics (Stats:*)")
        for first in range(0, len(stats), 2):
            pair = stats[first : first + 2]
            left.row(
                ", ".join(p.removeprefix("Stats:") for p in pair),
                *(cell("readback", p, units=True) for p in pair),
            )
    sinks = [e.name for e in entries if e.name.startswith("Sinks:")]
    if sinks:
        left.heading("Document sinks (Sinks:*)")
        for name in sinks:
            entry = served[name]
            left.row(
                name.removeprefix("Sinks:"),
                ("readback", name, {"alarm": True, "as_text": entry.dtype == "CHAR"}),
            )
    diag = [e.name for e in entries if e.name.startswith("Diag:") or e.name == "Heartbeat"]
    if diag:
        left.heading("Diagnostics (Diag:*, Heartbeat)")
        for first in range(0, len(diag), 2):
            pair = diag[first : first + 2]
            left.row(
                ", ".join(p.removeprefix("Diag:") for p in pair),
                *(cell("readback", p, units=True) for p in pair),
            )

    right = _Column(screen, 510, 44, 490, caption=100)
    right.heading("Live data")
    curves = tuple(c for c in PLOT_CURVES if have(c))
    if have("Data:X") and curves:
        screen.add(
            Widget("plot", "plot", right.x, right.y, right.width, 300, pv="Data:X", curves=curves)
        )
        right.y += 304
    names = [n for n in ("Data:XName", *(f"{c}Name" for c in curves)) if have(n)]
    for first in range(0, len(names), 3):
        trio = names[first : first + 3]
        right.row(
            ", ".join(n.removeprefix("Data:").removesuffix("Name") for n in trio),
            *(cell("readback", n) for n in trio),
        )
    if have("Data:NumPoints"):
        right.row("Points", ("readback", "Data:NumPoints", {}))
    right.heading("Plans: select, or open the form")
    for plan in plans:
        right.row(
            plan,
            (
                "button",
                "PlanName",
                {"value": plan, "text": f"select {plan}", "name": f"select_{_ident(plan)}"},
            ),
            (
                "link",
                "",
                {
                    "target": f"form_{plan}",
                    "text": f"{plan} form...",
                    "name": f"form_{_ident(plan)}",
                },
            ),
        )
    # string arrays: Phoebus shows them; PyDM 1.29's pyepics plugin fails on them (it emits a
    # list on its str signal: TypeError), so the PyDM screen leaves them out
    right.row(
        "Lists",
        cell("readback", "PlanList", pydm=False),
        cell("readback", "DeviceList", pydm=False),
        height=44,
    )
    return screen


def _range(info: ParameterInfo | None) -> str:
    if info is None:
        return ""
    parts = []
    if info.low is not None or info.high is not None:
        low = "" if info.low is None else f"{info.low:g}"
        high = "" if info.high is None else f"{info.high:g}"
        parts.append(f"[{low}, {high}]")
    if info.required:
        parts.append("required")
    return " ".join(parts)


def form_screen(
    plan: str, entries: Sequence[CatalogueEntry], parameters: Sequence[ParameterInfo]
) -> Screen:
    """One plan's form: a field per parameter (typed, with units, limits, states), Doc, Start
    and (where the queue serves it) Queue.

    ``entries`` are the form's PVs (``<plan>:...``) from the catalogue's ``form_entries``.
    """
    screen = Screen(f"form_{plan}", f"{plan}: plan form", 620, 200)
    info = {p.name: p for p in parameters}
    served = _served(entries)
    column = _Column(screen, 10, 10, 600, caption=130)
    screen.add(Widget("text", "title", 10, 10, 600, 26, text=f"<b>Plan {plan}</b>"))
    column.y = 44
    column.row("Doc", ("readback", f"{plan}:Doc", {"as_text": True}), height=66)
    column.heading("Parameters")
    for entry in entries:
        parameter = entry.name.removeprefix(f"{plan}:")
        if parameter not in info:
            continue
        text = entry.meaning
        if entry.record in ("mbbo", "bo"):
            field_widget: tuple[Kind, str, dict[str, object]] = (
                "choice",
                entry.name,
                {"text": text},
            )
        else:
            field_widget = (
                "entry",
                entry.name,
                {"text": text, "units": bool(entry.units), "as_text": entry.dtype == "CHAR"},
            )
        hint = _range(info.get(parameter))
        widgets = [field_widget]
        if hint or entry.units:
            widgets.append(
                (
                    "text",
                    "",
                    {
                        "text": " ".join(filter(None, [hint, entry.units])),
                        "name": f"range_{_ident(parameter)}",
                    },
                )
            )
        column.row(parameter, *widgets)
    column.heading("Run")
    column.row(
        "Start",
        ("button", f"{plan}:Start", {"value": "1", "text": f"Start {plan}", "name": "btn_Start"}),
        ("link", "", {"target": MAIN, "text": "main screen...", "name": "to_main"}),
    )
    if f"{plan}:Queue" in served:
        column.row(
            "Queue",
            (
                "button",
                f"{plan}:Queue",
                {"value": "1", "text": f"Queue {plan}", "name": "btn_Queue"},
            ),
        )
    column.row("Args", ("readback", f"{plan}:Args", {"as_text": True}), height=44)
    for name in ("State", "Status"):
        column.row(name, ("readback", name, {"alarm": True, "as_text": name == "Status"}))
    missing = screen.channels() - set(served) - {"State", "Status"}
    if missing:
        raise ValueError(f"form of {plan}: no such PVs {sorted(missing)}")
    return screen
