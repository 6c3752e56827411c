"""Ports for test and benchmark servers: one helper for the integration, in-process and
benchmark set-ups (each server gets its own port, on loopback only)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free for both TCP and UDP on loopback."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")
