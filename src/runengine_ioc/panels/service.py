"""The control room's part in a running IOC: autosave restored at start, files kept current.

:class:`ControlRoom` is built by the command line once the IOC exists. At start-up it puts
the autosaved values back (before the server answers, so no client sees the defaults first)
and writes the screens when ``--panels-dir`` is given. It follows Reload by wrapping the
context's ``apply_setup``: once the new plans are served, the rebuilt forms get their saved
values back and the screens are written again for the new plans.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..ca.autosave import Autosave
from ..ca.server import RunEngineIOC
from ..engine.catalog import ServedProfile
from .generate import write_all

log = logging.getLogger(__name__)


class ControlRoom:
    """Autosave and generated screens for one served IOC.

    Parameters
    ----------
    ioc
        The IOC, built but not yet serving.
    autosave
        Where its settings are saved, or ``None`` for none.
    panels_dir
        Where the screens, alarm and archiver files go, or ``None`` for none.
    """

    def __init__(
        self, ioc: RunEngineIOC, autosave: Autosave | None, panels_dir: Path | None
    ) -> None:
        self.ioc = ioc
        self.autosave = autosave
        self.panels_dir = panels_dir

    async def start(self) -> str:
        """Restore the autosaved values, write the files; return a note for Status."""
        note = await self.autosave.restore(self.ioc) if self.autosave is not None else ""
        await self.write_panels()
        apply = self.ioc.context.apply_setup

        async def apply_and_follow(setup: ServedProfile) -> None:
            before = {name: id(form) for name, form in self.ioc.forms.items()}
            await apply(setup)
            await self.after_reload(before)

        self.ioc.context.apply_setup = apply_and_follow
        return note

    async def after_reload(self, before: dict[str, int]) -> None:
        """Give rebuilt forms their saved values; write the files for the new plans."""
        if self.autosave is not None:
            rebuilt = [
                (plan, form)
                for plan, form in self.ioc.forms.items()
                if before.get(plan) != id(form)
            ]
            names = [f"{plan}:{name}" for plan, form in rebuilt for name in form.codecs]
            reloaded = str(self.ioc.status.status.value)  # "reloaded: ..." before any refusal
            note = await self.autosave.restore(self.ioc, only=names)
            for _, form in rebuilt:
                await form.initialize()  # alarms of required fields still unset
            if note:
                await self.ioc.status.say(f"{reloaded}; {note}")
        await self.write_panels()

    async def write_panels(self) -> None:
        if self.panels_dir is None:
            return
        try:
            await asyncio.to_thread(
                write_all, self.panels_dir, self.ioc.prefix, self.ioc.registry, type(self.ioc)
            )
        except OSError as exc:
            log.error("cannot write the screens to %s: %s", self.panels_dir, exc)
            await self.ioc.status.alarm(f"screens not written to {self.panels_dir}: {exc}")
