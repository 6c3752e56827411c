"""The audit log: every write a client asked for, accepted or refused, and why.

One JSON object per line (``time``, ``user``, ``host``, ``pv``, ``value``, ``accepted``,
``reason``), appended and flushed as each write is decided, so a crash loses nothing written
before it. ``time`` is when the write arrived: the times order the writes as the IOC handled
them (a write that takes long, such as a Reload, is logged when it ends, after writes that
arrived later). The file is rotated by size (``audit.jsonl`` -> ``audit.jsonl.1`` -> ...), keeping
``backups`` old files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .identity import Client

#: Longest value text kept in a line (a 4 kB JSON put is cut, and says so).
VALUE_LIMIT = 512


@dataclass(frozen=True)
class AuditRecord:
    """One write and its outcome."""

    time: float
    user: str
    host: str
    pv: str
    value: Any
    accepted: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON line's fields (dataclasses.asdict deep-copies: five times slower)."""
        return {
            "time": self.time,
            "user": self.user,
            "host": self.host,
            "pv": self.pv,
            "value": self.value,
            "accepted": self.accepted,
            "reason": self.reason,
        }

    def summary(self) -> str:
        """One line for the ``Audit:Last`` PV."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.time))
        verdict = "accepted" if self.accepted else f"refused ({self.reason})"
        return f"{stamp} {self.user}@{self.host} {self.pv}={self.value} {verdict}"


def shown_value(value: Any) -> Any:
    """A put's value as JSON can hold it: text for char arrays, a scalar for one element."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.itemsize == 1 and dtype.kind in "uiS":
        value = value.tobytes()  # a char waveform: its text
    elif hasattr(value, "tolist"):
        value = value.tolist()
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = list(value)  # caproto's DbrStringArray and the like
    while isinstance(value, list | tuple) and len(value) == 1:  # a string put: [[b"..."]]
        value = value[0]
    if isinstance(value, bytes):
        value = value.rstrip(b"\0").decode("utf-8", errors="replace")
    if isinstance(value, str | int | float | bool) or value is None:
        text = value if isinstance(value, str) else None
    else:
        text = repr(value)
    if text is not None and len(text) > VALUE_LIMIT:
        return text[: VALUE_LIMIT - 3] + "..."
    return text if text is not None else value


class AuditLog:
    """An append-only JSON-lines file, rotated at ``max_bytes``; ``listener`` sees each record.

    Writing is synchronous (one short line, flushed): the log is complete the moment a put
    is answered.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 10_000_000,
        backups: int = 5,
        listener: Callable[[AuditRecord], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.listener = listener
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = None
        self.last: AuditRecord | None = None

    def record(
        self,
        client: Client,
        pv: str,
        value: Any,
        accepted: bool,
        reason: str = "",
        *,
        when: float | None = None,
    ) -> AuditRecord:
        """Append one line (and tell the listener); ``when``: the write's arrival (now)."""
        entry = AuditRecord(
            time.time() if when is None else when,
            client.user,
            client.host,
            pv,
            shown_value(value),
            accepted,
            reason,
        )
        line = json.dumps(entry.as_dict(), default=repr) + "\n"
        handle = self._open()
        handle.write(line)
        handle.flush()
        if handle.tell() >= self.max_bytes:
            self._rotate()
        self.last = entry
        if self.listener is not None:
            self.listener(entry)
        return entry

    def _open(self) -> TextIO:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return self._file

    def _rotate(self) -> None:
        self.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
