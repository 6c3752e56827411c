"""Write the control room's files for one IOC: screens (PyDM, Phoebus), alarms, archiver list.

Everything comes from the PV catalogue of the IOC class and the registry's plans, so the
files name exactly the PVs the IOC serves; ``runengine-ioc panels`` calls :func:`write_all`,
and so does the IOC at start-up and after a Reload when given ``--panels-dir``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from caproto.server import PVGroup

from ..ca.catalogue import CatalogueEntry, catalogue, form_entries
from ..ca.forms import form_class
from ..engine.catalog import RegistryView
from . import alarms, archiver, phoebus, pydm
from .screens import Screen, form_screen, main_screen

log = logging.getLogger(__name__)

ALARMS_FILE = "alarms.xml"
ARCHIVER_FILE = "archiver.json"
ARCHIVER_NOTES = "archiver-left-out.txt"


def screens(registry: RegistryView, fixed: list[CatalogueEntry]) -> list[Screen]:
    """The main screen and one form screen per plan."""
    forms = form_entries(registry, form_class)
    built = [main_screen(fixed, registry.plan_names)]
    for plan in registry.plan_names:
        entries = [e for e in forms if e.name.startswith(f"{plan}:")]
        built.append(form_screen(plan, entries, registry.parameters(plan)))
    return built


def _write(path: Path, text: str) -> Path:
    """Write atomically: a screen open in a client is never seen half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_all(
    out_dir: Path, prefix: str, registry: RegistryView, ioc_class: type[PVGroup]
) -> list[Path]:
    """Write every file into ``out_dir``; return their paths.

    Screens of plans no longer registered (after a Reload) are removed, so the directory
    holds exactly the current plans' forms.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fixed = catalogue(ioc_class)
    written: list[Path] = []
    built = screens(registry, fixed)
    for screen in built:
        written.append(_write(out_dir / f"{screen.name}.ui", pydm.render(screen)))
        written.append(_write(out_dir / f"{screen.name}.bob", phoebus.render(screen, prefix)))
    current = {f"{screen.name}{ext}" for screen in built for ext in (".ui", ".bob")}
    for stale in [*out_dir.glob("form_*.ui"), *out_dir.glob("form_*.bob")]:
        if stale.name not in current:
            stale.unlink()
    every = [*fixed, *form_entries(registry, form_class)]
    main_bob = (out_dir / f"{built[0].name}.bob").resolve()
    written.append(_write(out_dir / ALARMS_FILE, alarms.render(fixed, prefix, main_bob)))
    written.append(_write(out_dir / ARCHIVER_FILE, archiver.render(every, prefix)))
    notes = [
        "# PVs of this IOC the Archiver Appliance list leaves out, and why",
        *(f"{prefix}{p.name}\t{p.why}" for p in archiver.left_out(every)),
    ]
    written.append(_write(out_dir / ARCHIVER_NOTES, "\n".join(notes) + "\n"))
    log.info("control-room files for %s written to %s (%d files)", prefix, out_dir, len(written))
    return written
