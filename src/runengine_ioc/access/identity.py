"""Who asked: the user and host a Channel Access client claims, and the PV it wrote.

Channel Access identity is what the client *says* (its ``CLIENT_NAME`` and ``HOST_NAME``
messages); behind a CA gateway the IOC sees the gateway's. README's "Gateways and honest
identity" says what follows for a deployment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Client:
    """A client as Channel Access names it: ``user@host``."""

    user: str
    host: str

    def __str__(self) -> str:
        return f"{self.user}@{self.host}"


@dataclass
class Caller:
    """The client behind the write being handled, and the PV it wrote.

    ``audited`` is set once the write's outcome went to the audit log (a Start is logged
    as accepted when its plan is accepted, long before its put completes).
    """

    client: Client
    pv: str
    value: Any = None
    arrived: float = 0.0
    audited: bool = field(default=False)

    def as_metadata(self) -> dict[str, str]:
        """What the start document records of who started the run."""
        return {"user": self.client.user, "host": self.client.host, "pv": self.pv}
