"""One worker process, seen from the IOC: start it, talk to it, watch it end.

The process is ``python -m runengine_ioc.host FD`` with one end of a socket pair; the IOC keeps
the other. A sender thread writes requests (a worker that stops reading can never block the
event loop), a reader thread reads replies and events. Replies resolve futures; events go to
the ``listener``; the end of the socket (the process died, was killed, or exited) is told once
to ``on_exit``. Nothing here imports the profile, bluesky or caproto.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .events import Coalesced, DataUpdate, Refused, SinkHealth, WorkerEvent
from .signatures import ArgumentError
from .wire import DataTaken, LoadFailed, Ready, Reply, Request, WorkerConfig, dump, load_from_worker

log = logging.getLogger(__name__)

#: What the worker's events go to (the supervisor, then the bridge); called on the reader thread.
EventSink = Callable[["WorkerProcess", WorkerEvent | Coalesced], None]


class WorkerGone(Refused):
    """The worker process ended (or was ended) before it answered."""


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


class WorkerProcess:
    """A worker process and its channel; thread-safe requests, events to ``on_event``."""

    def __init__(
        self,
        config: WorkerConfig,
        on_event: EventSink,
        on_exit: Callable[[WorkerProcess, int | None], None],
        *,
        generation: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.generation = generation
        self._on_event = on_event
        self._on_exit = on_exit
        self._env = env
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[Ready] = concurrent.futures.Future()
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self.gone = threading.Event()
        self.kill_reason = ""
        self.sink_health: SinkHealth | None = None  # its last report while not in service

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        """Start the process (from the event loop's thread: the worker dies with it)."""
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runengine_ioc.host",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
                env=self._env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self._outbox.put(dump(self.config))
        threading.Thread(target=self._write, name="worker-sender", daemon=True).start()
        threading.Thread(target=self._read, name="worker-reader", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def rss_mb(self) -> float | None:
        """The process's resident memory (Linux), None if unknown."""
        try:
            with open(f"/proc/{self.pid}/statm") as statm:
                pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6

    def kill(self, reason: str) -> None:
        """End the process now (SIGKILL); ``on_exit`` follows from the reader thread."""
        if not self.kill_reason:
            self.kill_reason = reason
        if self.process is not None and self.process.poll() is None:
            log.warning("killing worker process %s: %s", self.pid, reason)
            self.process.kill()

    def wait_exit(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # ---------------------------------------------------------------- requests
    def submit_request(self, op: str, *args: Any) -> concurrent.futures.Future[Any]:
        """Send a request; the future holds the value or raises the worker's refusal."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self.gone.is_set():
                future.set_exception(WorkerGone(self._gone_text()))
                return future
            request_id = next(self._ids)
            self._pending[request_id] = future
        self._outbox.put(dump(Request(request_id, op, args)))
        return future

    def request(self, op: str, *args: Any, timeout: float) -> Any:
        """Blocking (never on the event loop): the worker's answer, or its refusal raised."""
        future = self.submit_request(op, *args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise Refused(f"the worker did not answer {op} within {timeout:g} s") from None

    async def arequest(self, op: str, *args: Any, timeout: float) -> Any:
        """From the event loop: the worker's answer, without blocking the loop."""
        future = asyncio.wrap_future(self.submit_request(op, *args))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise Refused(f"the worker did not answer {op} within {timeout:g} s") from None

    def _gone_text(self) -> str:
        return self.kill_reason or "the worker process has ended"

    # ----------------------------------------------------------------- threads
    def _write(self) -> None:
        assert self._connection is not None
        while True:
            data = self._outbox.get()
            if data is None:
                return
            try:
                self._connection.send_bytes(data)
            except (OSError, ValueError):
                return

    def _read(self) -> None:
        assert self._connection is not None
        try:
            while True:
                try:
                    message = load_from_worker(self._connection.recv_bytes())
                except (EOFError, OSError):
                    break
                except Exception as exc:  # an inadmissible or damaged message
                    log.error("unreadable message from the worker: %s", exc)
                    continue
                self._dispatch(message)
        finally:
            self._ended()

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, Reply):
            with self._lock:
                future = self._pending.pop(message.id, None)
            if future is None or future.done():
                return
            if not message.kind:
                future.set_result(message.value)
            elif message.kind == "argument":
                future.set_exception(ArgumentError(message.error))
            elif message.kind == "refused":
                future.set_exception(Refused(message.error))
            else:
                future.set_exception(Refused(f"the worker failed: {message.error}"))
        elif isinstance(message, Ready):
            if not self.ready.done():
                self.ready.set_result(message)
        elif isinstance(message, LoadFailed):
            if not self.ready.done():
                self.ready.set_exception(WorkerGone(message.text))
        elif isinstance(message, DataTaken):
            snapshot = message.snapshot
            self._on_event(self, DataUpdate(snapshot.run_uid, _constant(snapshot)))
        else:
            self._on_event(self, message)

    def _ended(self) -> None:
        with self._lock:
            self.gone.set()
            pending, self._pending = self._pending, {}
        self._outbox.put(None)
        code = self.wait_exit(5.0)
        if self.process is not None and code is None:
            self.kill("it closed its channel but did not exit")
            code = self.wait_exit(5.0)
        text = self._gone_text()
        if not self.kill_reason and code is not None:
            text = f"the worker process ended ({describe_exit(code)})"
            self.kill_reason = text
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerGone(text))
        if not self.ready.done():
            self.ready.set_exception(WorkerGone(text))
        if self._connection is not None:
            self._connection.close()
        self._on_exit(self, code)


def describe_exit(code: int) -> str:
    """An exit status in words: ``exit code 3``, ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
