"""A Channel Access client that subscribes and then never reads its socket again.

It speaks CA with caproto's own client-side state machine (``caproto.VirtualCircuit``) over a
plain socket with a small receive buffer, so the IOC's sends to it stall within moments, as
they would for a hung or swapped-out client on the beamline network.
"""

from __future__ import annotations

import socket
import time
from types import TracebackType

import caproto as ca


class StalledClient:
    """Connect, create channels and subscribe ``copies`` times to each of ``names``; then
    read nothing (several subscriptions per channel fill caproto's per-client queue sooner).
    """

    def __init__(self, port: int, names: list[str], copies: int = 1, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.circuit = ca.VirtualCircuit(ca.CLIENT, ("127.0.0.1", port), 0)
        self._send(
            ca.VersionRequest(priority=0, version=13),
            ca.HostNameRequest("stalled-host"),
            ca.ClientNameRequest("stalled-user"),
        )
        channels = [ca.ClientChannel(name, self.circuit, cid) for cid, name in enumerate(names)]
        self._send(*(chan.create() for chan in channels))
        deadline = time.monotonic() + timeout
        while not all(chan.states[ca.CLIENT] is ca.CONNECTED for chan in channels):
            if time.monotonic() > deadline:
                raise TimeoutError(f"channels did not connect: {names}")
            self._receive()
        self._send(*(chan.subscribe(data_count=0) for chan in channels for _ in range(copies)))

    def _send(self, *commands: ca.Message) -> None:
        self.sock.sendall(b"".join(self.circuit.send(*commands)))

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the IOC closed the connection")
        commands, _ = self.circuit.recv(data)
        for command in commands:
            self.circuit.process_command(command)

    def closed_by_server(self, timeout: float) -> bool:
        """Read what is buffered; True once the IOC has closed the connection (EOF/reset)."""
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> StalledClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
