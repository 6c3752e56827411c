"""The baton: one client at a time may control and select, while it holds it.

While someone holds the baton, writes to the PVs of the baton's groups (``CONTROL`` and
``SELECT``) from anyone else are refused, and their rights are shown read-only. Holding
is by ``user@host``; an administrator may break it; an idle timeout (no write from the
holder for that long) releases it by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .identity import Client

#: The access groups the baton restricts.
BATON_GROUPS = frozenset({"CONTROL", "SELECT"})


class BatonRefusal(Exception):
    """A baton operation that is not allowed; the message says why."""


@dataclass
class Baton:
    """Who holds the baton, if anyone; ``timeout`` seconds idle releases it (None: never).

    ``clock`` is injectable for tests (``time.monotonic`` by default).
    """

    timeout: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic)
    holder: Client | None = None
    last_active: float = 0.0

    def current(self) -> Client | None:
        """The holder, after letting an idle timeout expire."""
        if (
            self.holder is not None
            and self.timeout is not None
            and self.clock() - self.last_active > self.timeout
        ):
            self.holder = None
        return self.holder

    def blocks(self, client: Client, group: str) -> Client | None:
        """The holder when it keeps ``client`` from writing to ``group``, else None."""
        if group not in BATON_GROUPS:
            return None
        holder = self.current()
        if holder is None or holder == client:
            return None
        return holder

    def touch(self, client: Client) -> None:
        """A write by the holder keeps the baton from going idle."""
        if self.holder == client:
            self.last_active = self.clock()

    def take(self, client: Client) -> bool:
        """Take the baton; True if it changed hands. BatonRefusal if another holds it."""
        holder = self.current()
        if holder is not None and holder != client:
            raise BatonRefusal(f"the baton is held by {holder}")
        self.holder, self.last_active = client, self.clock()
        return holder is None

    def release(self, client: Client) -> bool:
        """Give the baton back; True if it was held. BatonRefusal if another holds it."""
        holder = self.current()
        if holder is not None and holder != client:
            raise BatonRefusal(f"the baton is held by {holder}, not by {client}")
        self.holder = None
        return holder is not None

    def break_(self) -> Client | None:
        """Take the baton away from whoever holds it (an administrator's act)."""
        holder, self.holder = self.current(), None
        return holder
