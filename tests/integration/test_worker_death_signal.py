"""A worker whose IOC is killed dies with it; one whose IOC closes the channel ends cleanly.

A dying process closes its sockets before the kernel sends its children their death signal,
so the worker can see the channel end first. These tests drive that gap many times: a stand-in
IOC (a small Python process) starts a stand-in worker that runs the worker host's own code on
the channel's end. Killed with SIGKILL at varied moments, the IOC must never leave a worker that
went on to "close cleanly" (it would write a stop document a restarted IOC then contradicts);
an IOC that closes the channel and lives on must see its worker close cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.polling import wait_until

#: The stand-in worker: the host's death-signal handling, then a marker for a clean close.
WORKER = """
import socket, sys
from pathlib import Path
from runengine_ioc.host import await_death_signal, die_with_the_ioc
fd, ioc_pid, marker = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
armed = die_with_the_ioc(ioc_pid)
channel = socket.socket(fileno=fd)
Path(str(marker) + ".ready").write_text("armed" if armed else "unarmed")
while channel.recv(1024):
    pass
await_death_signal(ioc_pid if armed else None)
marker.write_text("closed cleanly")
"""

#: The stand-in IOC: starts the worker, then either waits to be killed or closes the channel.
IOC = """
import os, socket, subprocess, sys, time
worker, marker, mode = sys.argv[1], sys.argv[2], sys.argv[3]
ours, theirs = socket.socketpair()
child = subprocess.Popen(
    [sys.executable, "-c", worker, str(theirs.fileno()), str(os.getpid()), marker],
    pass_fds=(theirs.fileno(),),
)
theirs.close()
print(child.pid, flush=True)
if mode == "close":
    ours.close()
    child.wait()
else:
    time.sleep(120)
"""


def start_pair(tmp_path: Path, name: str, mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    marker = tmp_path / name
    ioc = subprocess.Popen(
        [sys.executable, "-c", IOC, WORKER, str(marker), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert ioc.stdout is not None
    with ioc.stdout:
        worker_pid = int(ioc.stdout.readline())
    wait_until(lambda: Path(str(marker) + ".ready").exists(), timeout=30)
    return ioc, worker_pid, marker


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (its parent died and init has not reaped it yet) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_killed_ioc_never_leaves_a_worker_that_closes_cleanly(tmp_path: Path) -> None:
    for attempt in range(12):
        ioc, worker_pid, marker = start_pair(tmp_path, f"kill-{attempt}", "wait")
        assert Path(str(marker) + ".ready").read_text() == "armed"
        time.sleep(0.003 * attempt)  # varied moments after the worker is listening
        ioc.send_signal(signal.SIGKILL)
        ioc.wait(timeout=10)
        wait_until(lambda pid=worker_pid: gone(pid), timeout=10)  # type: ignore[misc]
        assert not marker.exists(), f"attempt {attempt}: the worker outlived its killed IOC"


def test_an_ioc_that_closes_the_channel_sees_its_worker_close_cleanly(tmp_path: Path) -> None:
    ioc, _, marker = start_pair(tmp_path, "close", "close")
    assert ioc.wait(timeout=30) == 0
    assert marker.read_text() == "closed cleanly"
