"""A Phoebus alarm-server configuration for the IOC, from the PV catalogue.

The alarm server watches each PV's alarm severity, which the IOC already sets where it
matters: State (MINOR while paused/pausing/suspending, MAJOR when panicked), ExitStatus
(MAJOR after a failed plan, MINOR after an abort), Sinks:Status (MAJOR while a document sink
fails, MINOR once documents were lost), Heartbeat (MAJOR while the worker is unwell: panicked
or not answering; the alarm server also raises it when the PV disconnects: IOC gone). A queue's
state PV is added when the catalogue has one.

Each PV has guidance (what to do) and a display link to the main screen; the component
carries both too. The XML is what Phoebus's ``XmlModelReader`` reads (``config`` >
``component`` > ``pv``, each PV with ``enabled``, ``latching``, ``annunciating``,
``description``, ``delay``, ``guidance``, ``display``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..ca.catalogue import CatalogueEntry


@dataclass(frozen=True)
class AlarmRule:
    """How the alarm server treats one PV (names without the prefix)."""

    name: str
    description: str
    guidance: str
    latching: bool = False
    delay: int = 0


#: The PVs alarmed on, when served.
RULES = (
    AlarmRule(
        "State",
        "RunEngine state: paused, suspended or panicked",
        "MINOR: a plan is paused or suspended (a suspender tripped): resume it (Resume) or end "
        "it (Stop/Abort) from the main screen. MAJOR (panicked): the RunEngine cannot run "
        "plans; restart the IOC and look at its log.",
        delay=2,
    ),
    AlarmRule(
        "ExitStatus",
        "The last plan failed or was aborted",
        "The Status line and the IOC log say why. Fix the cause (device, arguments) and start "
        "the plan again; acknowledge the alarm once seen.",
        latching=True,
    ),
    AlarmRule(
        "Sinks:Status",
        "A document sink fails or lost documents",
        "MAJOR: a sink (0MQ, Tiled, Kafka, profile callback) fails; documents are queued, then "
        "dropped. MINOR: documents were dropped (Sinks:Dropped). The local files are complete; "
        "check the sink's service.",
        delay=5,
    ),
    AlarmRule(
        "Heartbeat",
        "The IOC or its RunEngine worker is unwell",
        "MAJOR: the worker panicked or does not answer; no plan can run: restart the IOC and "
        "read its log. Disconnected: the IOC process is gone or unreachable; restart it (the "
        "local files, scan ids and autosaved settings survive).",
        delay=5,
    ),
)


def queue_rules(entries: Sequence[CatalogueEntry]) -> list[AlarmRule]:
    """An alarm on the queue's state PV, when the IOC serves one (``Queue:State``...)."""
    return [
        AlarmRule(
            entry.name,
            "The plan queue stopped on an error",
            "The queue's Status says which item failed; fix it, then start the queue again.",
            latching=True,
        )
        for entry in entries
        if entry.name.lower().startswith("queue") and entry.name.endswith("State")
    ]


def _pair(parent: ET.Element, tag: str, title: str, details: str) -> None:
    element = ET.SubElement(parent, tag)
    ET.SubElement(element, "title").text = title
    ET.SubElement(element, "details").text = details


def render(entries: Sequence[CatalogueEntry], prefix: str, main_display: Path) -> str:
    """The alarm configuration XML for an IOC serving ``entries`` under ``prefix``.

    ``main_display`` is the main ``.bob`` screen the alarms link to (an absolute path: the
    alarm server's clients open it as given).
    """
    served = {entry.name for entry in entries}
    config = ET.Element("config", {"name": "RunEngine"})
    component = ET.SubElement(config, "component", {"name": f"RunEngine IOC {prefix}"})
    _pair(
        component,
        "guidance",
        "RunEngine IOC",
        f"The IOC {prefix} runs bluesky plans. Its main screen shows the state, the last "
        "Status line and the document sinks.",
    )
    display = str(main_display)
    _pair(component, "display", "Main screen", display)
    for rule in [*RULES, *queue_rules(entries)]:
        if rule.name not in served:
            continue
        pv = ET.SubElement(component, "pv", {"name": f"{prefix}{rule.name}"})
        ET.SubElement(pv, "enabled").text = "true"
        ET.SubElement(pv, "latching").text = "true" if rule.latching else "false"
        ET.SubElement(pv, "annunciating").text = "false"
        ET.SubElement(pv, "description").text = rule.description
        ET.SubElement(pv, "delay").text = str(rule.delay)
        _pair(pv, "guidance", "What to do", rule.guidance)
        _pair(pv, "display", "Main screen", display)
    ET.indent(config, space="  ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(config, encoding="unicode") + "\n"
    )
