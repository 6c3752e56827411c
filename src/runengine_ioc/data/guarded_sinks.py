"""Document sinks other than the local files: each behind its own bounded queue and thread.

The RunEngine's thread only ever does a non-blocking put: a sink that is slow fills its own
queue (the documents that do not fit are counted, never waited for) and a sink that raises is
logged and counted on its own thread, so neither slows the plan nor changes its exit status.
How the sinks are doing is reported to the listener as one coalesced
:class:`~runengine_ioc.engine.events.SinkHealth` (the IOC shows it in ``Sinks:Status`` and
``Sinks:Dropped``).

The sinks themselves are bluesky's own callbacks, made by the factories below on the sink's
thread when it starts (so the IOC starts even when Tiled or Kafka is down; a sink that could
not be made is retried at the next run's start document):

- :func:`zmq_publisher`: ``bluesky.callbacks.zmq.Publisher`` to a ``bluesky-0MQ-proxy``;
- :class:`ZmqServer`: bluesky's ``Proxy`` run inside the IOC, for RemoteDispatchers to connect
  to directly;
- :func:`tiled_writer`: ``bluesky.callbacks.tiled_writer.TiledWriter``;
- :func:`kafka_publisher`: ``bluesky_kafka.Publisher`` (the optional ``kafka`` extra).

Why not ``bluesky.callbacks.buffer.BufferingWrapper``: its ``__call__`` blocks the RunEngine
when the queue is full and raises into it after shutdown, the two things a sink must not do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..engine.events import Listener, SinkHealth

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 100_000
Callback = Callable[[str, dict], Any]
Factory = Callable[[], Callback]

_CLOSE = object()


class SinkMonitor:
    """Counts, per sink, what could not be delivered; reports a summary when it changes."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._lock = threading.Lock()
        self._sinks: list[GuardedSink] = []

    def add(self, sink: GuardedSink) -> None:
        with self._lock:
            self._sinks.append(sink)

    @property
    def sinks(self) -> list[GuardedSink]:
        with self._lock:
            return list(self._sinks)

    def undelivered(self) -> int:
        return sum(sink.undelivered for sink in self.sinks)

    def health(self) -> SinkHealth:
        sinks = self.sinks
        if not sinks:
            return SinkHealth("no sinks besides the local files", 0, 0)
        severity = 0
        parts = []
        for sink in sinks:
            text, sink_severity = sink.describe()
            parts.append(text)
            severity = max(severity, sink_severity)
        return SinkHealth("; ".join(parts), severity, sum(s.undelivered for s in sinks))

    def report(self) -> None:
        self._listener(self.health())


class GuardedSink:
    """One sink on its own thread behind a bounded queue; never blocks nor raises to its caller.

    Parameters
    ----------
    name
        How the sink is named in ``Sinks:Status`` and the log.
    factory
        Makes the callback, on the sink's thread (at once, and again at a run's start document
        while it has failed).
    monitor
        Where problems are counted and reported.
    queue_size
        Documents held for a slow sink before further ones are dropped (and counted).
    """

    def __init__(
        self,
        name: str,
        factory: Factory,
        monitor: SinkMonitor,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.name = name
        self._factory = factory
        self._monitor = monitor
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._callback: Callback | None = None
        self._closed = False
        self.delivered = 0
        self.failed = 0  # documents the sink raised on (or had no sink for)
        self.dropped = 0  # documents that did not fit in the queue
        self.failing = False
        self.last_error = ""
        self._lock = threading.Lock()
        monitor.add(self)
        self._thread = threading.Thread(target=self._serve, name=f"sink {name}", daemon=True)
        self._thread.start()

    @property
    def undelivered(self) -> int:
        return self.failed + self.dropped

    def describe(self) -> tuple[str, int]:
        with self._lock:
            if self.failing:
                return f"{self.name}: FAILING ({self.undelivered} lost): {self.last_error}", 2
            if self.undelivered:
                why = f"; last error: {self.last_error}" if self.last_error else ""
                return f"{self.name}: ok, {self.undelivered} lost{why}", 1
            return f"{self.name}: ok", 0

    # ------------------------------------------------------- the RunEngine side
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait((name, doc))
        except queue.Full:
            with self._lock:
                self.dropped += 1
                first = self.dropped == 1
            if first:
                log.error("sink %s cannot keep up: its queue is full, dropping documents", self)
            self._monitor.report()

    # -------------------------------------------------------- the sink's thread
    def _connect(self) -> bool:
        try:
            self._callback = self._factory()
        except Exception as exc:
            self._callback = None
            self._fail(f"cannot connect: {type(exc).__name__}: {exc}")
            return False
        log.info("sink %s ready", self.name)
        return True

    def _fail(self, message: str, count: int = 0) -> None:
        with self._lock:
            changed = not self.failing or message != self.last_error
            self.failed += count
            self.failing = True
            self.last_error = message
        if changed:
            log.error("sink %s: %s", self.name, message)
        self._monitor.report()

    def _serve(self) -> None:
        self._connect()
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            name, doc = item
            if self._callback is None and (name != "start" or not self._connect()):
                self._fail(self.last_error, count=1)
                continue
            assert self._callback is not None
            try:
                self._callback(name, doc)
            except Exception as exc:
                self._fail(f"{name}: {type(exc).__name__}: {exc}", count=1)
                continue
            with self._lock:
                self.delivered += 1
                recovered, self.failing = self.failing, False
            if recovered:
                log.info("sink %s delivering again", self.name)
                self._monitor.report()

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued (within ``timeout``), stop the thread; True if it ended."""
        self._closed = True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(_CLOSE, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        ended = not self._thread.is_alive()
        close = getattr(self._callback, "close", None)
        if ended and callable(close):
            with contextlib.suppress(Exception):
                close()
        if not ended:
            log.error("sink %s did not finish within %.1f s", self.name, timeout)
        return ended

    def __repr__(self) -> str:
        return f"<GuardedSink {self.name}>"


def close_all(sinks: Iterable[GuardedSink], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all([sink.close(max(0.1, deadline - time.monotonic())) for sink in sinks])


# ------------------------------------------------------------------ factories
def zmq_publisher(address: str) -> Factory:
    """bluesky's 0MQ Publisher, connecting to a proxy's in-address ``HOST:PORT``."""
    from bluesky.callbacks.zmq import Publisher

    return lambda: Publisher(address)


class ZmqServer:
    """bluesky's 0MQ Proxy inside the IOC: RemoteDispatchers connect to ``address`` directly.

    The proxy's in-side is bound to a free loopback port, which the IOC's Publisher connects
    to; its out-side is bound to ``address`` (``HOST:PORT``).
    """

    def __init__(self, address: str) -> None:
        from bluesky.callbacks.zmq import Proxy

        self.address = address
        self._proxy = Proxy("127.0.0.1", address)
        self.in_address = str(self._proxy.in_port)
        self._thread = threading.Thread(
            target=self._proxy.start, name=f"zmq proxy {address}", daemon=True
        )
        self._thread.start()

    def factory(self) -> Factory:
        return zmq_publisher(self.in_address)


def tiled_writer(uri: str, api_key: str | None = None, batch_size: int = 100) -> Factory:
    """bluesky's TiledWriter to a Tiled server (API key from TILED_API_KEY if not given)."""
    from bluesky.callbacks.tiled_writer import TiledWriter

    key = api_key if api_key is not None else os.environ.get("TILED_API_KEY")
    return lambda: TiledWriter.from_uri(uri, api_key=key, batch_size=batch_size)


def kafka_publisher(
    topic: str, bootstrap_servers: str, producer_config: dict[str, Any] | None = None
) -> Factory:
    """bluesky-kafka's Publisher (needs the ``kafka`` extra: bluesky-kafka, confluent-kafka)."""
    from bluesky_kafka import Publisher

    config = {"acks": "all", "enable.idempotence": True, **(producer_config or {})}
    return lambda: Publisher(
        topic=topic,
        bootstrap_servers=bootstrap_servers,
        key=topic,
        producer_config=config,
        flush_on_stop_doc=True,
    )
