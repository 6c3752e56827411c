"""Channel Access clients that claim a given user and host (caproto's threading client).

libca takes the user from the OS account and the host from ``gethostname()``; caproto's
client sends what it is given (``client_name``, ``host_name``), which is exactly what an IOC
sees of any client: a claim. Each :class:`NamedClient` is its own CA context (own circuit).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caproto import AccessRights
from caproto.threading.client import PV, Context

from tests.polling import wait_until

RW = AccessRights.READ | AccessRights.WRITE
RO = AccessRights.READ


class NamedClient:
    """One client (``user@host``) of an IOC; PVs by suffix, with their live access rights."""

    def __init__(self, prefix: str, user: str, host: str) -> None:
        self.prefix = prefix
        self.context = Context(client_name=user, host_name=host)
        self.pvs: dict[str, PV] = {}
        self.rights_seen: dict[str, list[AccessRights]] = {}
        self._callbacks: list[Any] = []

    def pv(self, suffix: str) -> PV:
        if suffix not in self.pvs:
            (pv,) = self.context.get_pvs(self.prefix + suffix, timeout=5)
            seen = self.rights_seen.setdefault(suffix, [])

            def record(_pv: PV, rights: AccessRights) -> None:
                seen.append(rights)

            self._callbacks.append(record)  # caproto holds callbacks weakly
            pv.access_rights_callback.add_callback(record)
            pv.wait_for_connection(timeout=10)
            self.pvs[suffix] = pv
        return self.pvs[suffix]

    def rights(self, suffix: str) -> AccessRights:
        return self.pv(suffix).access_rights

    def put(self, suffix: str, value: Any) -> None:
        """Send a write without waiting (a refused write is answered with an error only)."""
        pv = self.pv(suffix)
        if isinstance(value, dict):
            value = json.dumps(value)
        data = value.encode() if isinstance(value, str) else [value]
        pv.write(data, wait=False)

    def put_wait(self, suffix: str, value: Any, timeout: float = 30.0) -> None:
        """A write with completion (put callback), for writes that are accepted."""
        pv = self.pv(suffix)
        if isinstance(value, dict):
            value = json.dumps(value)
        data = value.encode() if isinstance(value, str) else [value]
        pv.write(data, wait=True, timeout=timeout)

    def get_text(self, suffix: str) -> str:
        data = self.pv(suffix).read().data
        raw = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
        return raw.rstrip(b"\0").decode()

    def close(self) -> None:
        self.context.disconnect()


@contextmanager
def named_clients(ioc: Any, *who: tuple[str, str]) -> Iterator[list[NamedClient]]:
    """Clients (user, host) of ``ioc``, reaching it over loopback on its own port."""
    saved = {k: os.environ.get(k) for k in ("EPICS_CA_ADDR_LIST", "EPICS_CA_AUTO_ADDR_LIST")}
    saved["EPICS_CA_SERVER_PORT"] = os.environ.get("EPICS_CA_SERVER_PORT")
    os.environ.update(
        EPICS_CA_ADDR_LIST="127.0.0.1",
        EPICS_CA_AUTO_ADDR_LIST="NO",
        EPICS_CA_SERVER_PORT=str(ioc.port),
    )
    clients = []
    try:
        clients = [NamedClient(ioc.prefix, user, host) for user, host in who]
        yield clients
    finally:
        for client in clients:
            client.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_audit(path: Path, nth: int = 0, **match: Any) -> dict[str, Any]:
    """The ``nth`` (from 0) audit line whose fields equal ``match`` (waiting for it)."""

    def found() -> dict[str, Any] | None:
        lines = [x for x in audit_lines(path) if all(x.get(k) == v for k, v in match.items())]
        return lines[nth] if len(lines) > nth else None

    return wait_until(found, timeout=10, what=f"audit line {match}")
