"""The worker process: the RunEngine, the profile, the devices, the sinks; no Channel Access.

Started by the IOC (``python -m runengine_ioc.host FD IOC_PID``) with one end of a local
socket as ``FD``; it dies with the IOC process. It reads a
:class:`~.engine.wire.WorkerConfig`, loads the profile, sends
:class:`~.engine.wire.Ready` (or :class:`~.engine.wire.LoadFailed` and exits), then serves
requests until told to shut down or until the socket closes (the IOC is gone: the plan is
aborted and the process ends). Events go up as they happen; per-point records are coalesced
here, at the IOC's publishing rate, and always flushed before the next ordered event, so a
run's final values reach the IOC before its end.

Whatever the profile does (``sys.exit``, a hang, a crash, unbounded memory) ends or wedges
this process only; the IOC restarts it (``engine/supervisor.py``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .data import guarded_sinks as doc_sinks
from .data.files import LocalFilesSink, PersistentScanId
from .data.guarded_sinks import GuardedSink, SinkMonitor
from .data.live_data import LiveData
from .engine.bluesky_adapter import install_lazy_plan_stacks
from .engine.catalog import describe_registry
from .engine.events import Coalesced, DataUpdate, Refused, WorkerEvent
from .engine.profile import ProfileError, Setup, build_setup
from .engine.signatures import ArgumentError
from .engine.wire import (
    DataTaken,
    LoadFailed,
    Ready,
    Reply,
    Request,
    SinkOptions,
    WorkerConfig,
    dump,
)
from .engine.worker import RunEngineWorker

log = logging.getLogger("runengine_ioc.worker")

#: prctl(2): the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1
DEATH_SIGNAL_WAIT = 2.0  # s: from the end of the channel to a dying IOC's signal, at most


class Uplink:
    """Sends to the IOC from any thread: ordered events at once, per-point records coalesced.

    One lock orders every send. A :class:`Coalesced` record waits in its slot (one per type)
    until the ticker sends the latest at ``rate_hz``, or an ordered event flushes the slots
    before itself.
    """

    def __init__(self, connection: Connection, rate_hz: float) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._slots: dict[type[Coalesced], Coalesced] = {}
        self._period = 1.0 / rate_hz
        self.closed = threading.Event()
        threading.Thread(target=self._tick, name="uplink-ticker", daemon=True).start()

    def send(self, message: object) -> None:
        with self._lock:
            self._flush()
            self._send(message)

    def listener(self, event: WorkerEvent | Coalesced) -> None:
        """The worker's listener: called from its threads with everything it has to say."""
        if isinstance(event, Coalesced):
            with self._lock:
                self._slots[type(event)] = event
            return
        self.send(event)

    def _send(self, message: object) -> None:
        if self.closed.is_set():
            return
        try:
            self._connection.send_bytes(dump(message))
        except (OSError, ValueError):  # the IOC has gone
            self.closed.set()

    def _flush(self) -> None:
        slots, self._slots = self._slots, {}
        for record in slots.values():
            if isinstance(record, DataUpdate):
                self._send(DataTaken(record.take()))
            else:
                self._send(record)

    def _tick(self) -> None:
        while not self.closed.wait(self._period):
            with self._lock:
                self._flush()


def _same(callback: Callable[[str, dict], Any]) -> Callable[[str, dict], Any]:
    return callback


def build_sinks(options: SinkOptions, monitor: SinkMonitor) -> list[GuardedSink]:
    """The document sinks the options ask for, each behind its own guard.

    Raises ImportError (a missing extra) or ValueError (bad options) before anything runs.
    """
    named: list[tuple[str, doc_sinks.Factory]] = []
    for address in options.zmq_publish:
        named.append((f"zmq-publish {address}", doc_sinks.zmq_publisher(address)))
    for address in options.zmq_serve:
        named.append((f"zmq-serve {address}", doc_sinks.ZmqServer(address).factory()))
    if options.tiled_uri:
        factory = doc_sinks.tiled_writer(options.tiled_uri, batch_size=options.tiled_batch_size)
        named.append((f"tiled {options.tiled_uri}", factory))
    if options.kafka_topic:
        factory = doc_sinks.kafka_publisher(options.kafka_topic, options.kafka_bootstrap)
        named.append((f"kafka {options.kafka_topic}@{options.kafka_bootstrap}", factory))
    return [
        GuardedSink(name, factory, monitor, queue_size=options.queue_size)
        for name, factory in named
    ]


def guard_profile_callbacks(
    setup: Setup, monitor: SinkMonitor, queue_size: int
) -> list[GuardedSink]:
    """The profile's callbacks, each behind its own guard like the command-line sinks."""
    guarded = []
    for callback in setup.callbacks:
        label = getattr(callback, "__name__", type(callback).__name__)
        factory = functools.partial(_same, callback)
        guarded.append(GuardedSink(f"profile {label}", factory, monitor, queue_size=queue_size))
    return guarded


def _load(config: WorkerConfig) -> Setup:
    """The profile, with every way it can fail turned into one line."""
    try:
        return build_setup(config.profile, config.happi_db, max_points=config.max_points)
    except ProfileError:
        raise
    except SystemExit as exc:
        raise ProfileError(f"profile {config.profile!r} called sys.exit({exc.code!r})") from exc
    except BaseException as exc:  # KeyboardInterrupt, a C extension's error...
        raise ProfileError(f"profile {config.profile!r}: {type(exc).__name__}: {exc}") from exc


class WorkerHost:
    """The RunEngine worker served over the socket: one thread per request, pings inline."""

    def __init__(
        self, connection: Connection, config: WorkerConfig, ioc_pid: int | None = None
    ) -> None:
        self.connection = connection
        self.config = config
        self.ioc_pid = ioc_pid  # set when the IOC's death kills this process (see below)
        self.uplink = Uplink(connection, config.max_rate_hz)
        self.worker: RunEngineWorker | None = None
        self.sinks: list[GuardedSink] = []
        self.files: LocalFilesSink | None = None

    def start(self) -> bool:
        """Load the profile and start the RunEngine; False (LoadFailed sent) if it cannot."""
        config = self.config
        try:
            setup = _load(config)
            monitor = SinkMonitor(self.uplink.listener)
            live_data = LiveData(self.uplink.listener, capacity=config.data_capacity)
            sinks = build_sinks(config.sinks, monitor)
            profile_sinks = guard_profile_callbacks(setup, monitor, config.sinks.queue_size)
            self.files = LocalFilesSink(config.data_dir, min_free_mb=config.min_free_mb)
        except (ProfileError, ImportError, ValueError, OSError) as exc:
            self.uplink.send(LoadFailed(str(exc) or type(exc).__name__))
            return False
        self.sinks = [*sinks, *profile_sinks]
        monitor.report()
        # bluesky formats a stack per plan stub (most of a point's time): only when it warns
        install_lazy_plan_stacks()
        self.worker = RunEngineWorker(
            setup.registry,
            self.uplink.listener,
            # the files first and unbuffered (lossless); the others never hold up the plan
            callbacks=[self.files, live_data, *sinks],
            profile_callbacks=profile_sinks,
            suspenders=setup.suspenders,
            metadata=setup.metadata,
            scan_id_source=PersistentScanId(config.data_dir),
            halt_timeout=config.halt_timeout,
            first_ticket=config.first_ticket,
        )
        policy = dict(setup.access_policy) if setup.access_policy is not None else None
        self.uplink.send(
            Ready(describe_registry(setup.registry), setup.description, policy, setup.access_groups)
        )
        return True

    def serve(self) -> None:
        """Answer requests until shut down or until the IOC closes the socket."""
        while True:
            try:
                request = pickle.loads(self.connection.recv_bytes())
            except (EOFError, OSError):
                await_death_signal(self.ioc_pid)
                log.warning("the IOC has gone: ending the plan and exiting")
                self.close("the IOC process has gone", 10.0)
                return
            if not isinstance(request, Request):
                continue
            if request.op == "ping":
                self.uplink.send(Reply(request.id, os.getpid()))
                continue
            if request.op == "shutdown":  # the last request: answered here, then the end
                self._answer(request)
                return
            threading.Thread(target=self._answer, args=(request,), daemon=True).start()

    def _answer(self, request: Request) -> None:
        try:
            value = self._do(request.op, request.args)
            reply = Reply(request.id, value)
        except ArgumentError as exc:
            reply = Reply(request.id, error=str(exc), kind="argument")
        except Refused as exc:
            reply = Reply(request.id, error=str(exc), kind="refused")
        except Exception as exc:
            log.error("request %s failed:\n%s", request.op, traceback.format_exc())
            reply = Reply(request.id, error=f"{type(exc).__name__}: {exc}", kind="error")
        self.uplink.send(reply)

    def _do(self, op: str, args: tuple[Any, ...]) -> Any:
        worker = self.worker
        assert worker is not None
        if op == "submit":
            return worker.submit(*args)
        if op == "submit_after":
            return worker.submit_after(*args)
        if op == "cancel_follow_ons":
            return worker.cancel_follow_ons()
        if op == "pause":
            return worker.request_pause(*args)
        if op == "resume":
            return worker.resume()
        if op == "stop":
            return worker.stop()
        if op == "abort":
            return worker.abort(*args)
        if op == "halt":
            return worker.halt()
        if op == "validate":
            worker.registry.validate(*args)
            return None
        if op == "check_argument":
            return worker.registry.check_argument(*args)
        if op == "shutdown":
            return self.close(*args)
        raise Refused(f"the worker does not know the request {op!r}")

    def close(self, reason: str, timeout: float) -> bool:
        """End any plan cleanly, let the sinks deliver what they hold, close the files."""
        clean = True
        if self.worker is not None:
            clean = self.worker.shutdown(reason, timeout)
        if not doc_sinks.close_all(self.sinks, timeout):
            log.error("some document sinks did not finish within %.1f s", timeout)
        if self.files is not None:
            self.files.close()
        return clean


def await_death_signal(ioc_pid: int | None, deadline: float = DEATH_SIGNAL_WAIT) -> None:
    """After the channel ends: wait (briefly) for the SIGKILL that a dying IOC sends.

    A dying process closes its files before the kernel signals its children, so the end of
    the channel can reach this process first. Without this wait the worker could write a stop
    document in that gap, and a killed IOC would sometimes leave a closed run and sometimes an
    interrupted one. If the IOC is still alive at the deadline it closed the channel itself.
    """
    if ioc_pid is None:
        return
    end = time.monotonic() + deadline
    while os.getppid() == ioc_pid and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.05)  # reparented: the signal was sent with it; this is never reached then


def die_with_the_ioc(ioc_pid: int) -> bool:
    """Be killed (SIGKILL) the moment the IOC process dies (Linux ``PR_SET_PDEATHSIG``).

    A killed IOC leaves its run as a crash would: no stop document, reported as interrupted
    when the IOC starts again, and no orphaned RunEngine acting on the hardware while a new
    IOC starts its own. Where the call is not available, the end of the channel does it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        return False
    if os.getppid() != ioc_pid:  # the IOC died before the call took effect
        os._exit(1)
    return armed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ioc_pid = int(args[1]) if len(args) > 1 else None
    if ioc_pid is not None and not die_with_the_ioc(ioc_pid):
        ioc_pid = None
    # Ctrl-C in the IOC's terminal, or a service manager's SIGTERM to the whole group, is the
    # IOC's to act on: it ends the plan cleanly through this channel, then ends this process
    # (and if the IOC itself is gone, the channel's end does the same)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection = Connection(int(args[0]))
    config = pickle.loads(connection.recv_bytes())
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s[worker %(process)d]: %(message)s",
    )
    host = WorkerHost(connection, config, ioc_pid)
    if not host.start():
        return 2
    host.serve()  # the last reply was written to the socket before this returns
    host.uplink.closed.set()
    return 0


if __name__ == "__main__":
    # os._exit: a profile's non-daemon threads must not keep a finished worker alive
    code = main()
    logging.shutdown()
    os._exit(code)
