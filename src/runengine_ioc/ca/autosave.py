"""Autosave: what an operator typed survives a restart, as EPICS autosave does for an IOC.

PlanName, PlanArgs, Metadata and every plan form's fields are saved on change (each accepted
put) to one JSON file in the data directory, and put back at start-up through the same
putters a client's put goes through: a value the current plans no longer accept (a plan
removed, a parameter renamed, a value out of new limits) is dropped, and Status says so.
A Reload that rebuilds a form gets that form's saved values back the same way.

Saving is a small synchronous write (a temporary file, then a rename, so a crash leaves the
old file or the new one, never half of one): a few hundred bytes, on the loop, in the order
the puts were accepted.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .common import clear_put_alarm
from .server import RunEngineIOC

log = logging.getLogger(__name__)

#: The file in the data directory.
AUTOSAVE_FILE = "autosave.json"
#: The selection PVs saved, in the order they are restored (PlanArgs is checked against
#: PlanName, so PlanName goes first).
SELECTION_PVS = ("PlanName", "PlanArgs", "Metadata")
_FORMAT = 1


def _plain(value: Any) -> Any:
    """A PV value as JSON can hold it (numpy arrays and scalars to lists and numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Autosave:
    """Save the IOC's settable selection and form values on change; restore them at start.

    Parameters
    ----------
    path
        The autosave file (``<data dir>/autosave.json``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ioc: RunEngineIOC | None = None
        self._touched: set[str] = set()
        self._saved: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            content = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("autosave file %s unreadable (%s): starting without it", self.path, exc)
            return {}
        values = content.get("values") if isinstance(content, dict) else None
        return dict(values) if isinstance(values, dict) else {}

    @staticmethod
    def channels(ioc: RunEngineIOC) -> dict[str, Any]:
        """The saved PVs, by name without the prefix, in the order they are restored."""
        selection = ioc.selection
        found: dict[str, Any] = dict(
            zip(
                SELECTION_PVS,
                (selection.plan_name, selection.plan_args, selection.metadata),
                strict=True,
            )
        )
        for plan, form in ioc.forms.items():
            for name in form.codecs:
                found[f"{plan}:{name}"] = form.channel(name)
        return found

    async def restore(self, ioc: RunEngineIOC, only: Iterable[str] | None = None) -> str:
        """Put the saved values back through their putters; return a note for Status.

        ``only``: restore these names alone (the fields of forms a Reload rebuilt). The note
        is ``""`` when nothing was saved; otherwise it counts what was restored and names
        what was dropped, and why.
        """
        channels = self.channels(ioc)
        wanted = set(self._saved) if only is None else set(only) & set(self._saved)
        restored, dropped = 0, []
        for name in [*(n for n in channels if n in wanted), *sorted(wanted - set(channels))]:
            channel = channels.get(name)
            if channel is None:
                dropped.append(f"{name} (no longer served)")
                continue
            try:
                await channel.write(self._saved[name])
            except Exception as exc:  # the putter's refusal, or caproto's (type, length)
                await clear_put_alarm(channel)
                dropped.append(f"{name} ({_reason(exc)})")
                continue
            self._touched.add(name)
            restored += 1
        if only is None:
            self._touched &= set(channels)
        self._ioc = ioc
        self.attach(ioc)
        if dropped or only is None:
            self.save()
        if not wanted:
            return ""
        note = f"autosave: {restored} value{'s' if restored != 1 else ''} restored"
        if dropped:
            note += f"; dropped {'; '.join(dropped)}"
        return note

    def attach(self, ioc: RunEngineIOC) -> None:
        """Save on every accepted write of each saved PV (new forms: call again)."""
        self._ioc = ioc
        for name, channel in self.channels(ioc).items():
            if getattr(channel, "_autosave_key", None) == name:
                continue
            original = channel.write

            async def write(
                value: Any, *args: Any, _original: Any = original, _key: str = name, **kw: Any
            ) -> Any:
                result = await _original(value, *args, **kw)
                self._touched.add(_key)
                self.save()
                return result

            channel.write = write
            channel._autosave_key = name

    def snapshot(self) -> dict[str, Any]:
        """The values to save: each saved PV that was put (or restored) and is still served."""
        if self._ioc is None:
            return dict(self._saved)
        channels = self.channels(self._ioc)
        return {
            name: _plain(channel.value)
            for name, channel in channels.items()
            if name in self._touched
        }

    def save(self) -> None:
        """Write the snapshot to the file (atomically); log, do not raise, if it fails."""
        values = self.snapshot()
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps({"format": _FORMAT, "values": values}, indent=1))
            os.replace(temporary, self.path)
        except (OSError, TypeError, ValueError) as exc:
            log.error("autosave to %s failed: %s", self.path, exc)
            return
        self._saved = values
