"""Monitor fan-out as EPICS base's server does it: bounded per client, in order with replies.

caproto's asyncio server hands every monitor update to *one* task that puts it on each
subscribed circuit's queue with an awaiting ``put``: a client that stops reading fills its
queue, that task waits on it for good, and from then on no client gets any monitor update
while the server's own queue of updates grows without bound. Its write replies also bypass the
monitors: a put's completion goes straight to the socket while the monitors the put caused
still wait in the batching queue, so a client reading its subscription after
``caput(wait=True)`` sees the old value.

EPICS base's server (rsrv with dbEvent) instead keeps, per client, a bounded queue in which
each subscription holds at most a few entries; when a client falls behind, a new value
replaces that subscription's newest queued one (the client gets the latest news, not all of
it), and posting never waits for any client. A put's completion is queued behind the events
the put posted. Here:

- :class:`FanoutContext` posts each update *synchronously* into every subscribed circuit's
  outbox (posting never awaits, so nothing one client does delays another).
- :class:`FanoutCircuit` keeps one ordered outbox per client: monitors, bounded per
  subscription (:data:`PENDING_PER_SUBSCRIPTION`, newest kept), and every other reply
  (reads, put completions, access rights) in the order they were made, sent by one task.
  A put's completion therefore leaves after every monitor posted while the put ran.
- A client that takes nothing for ``send_timeout`` seconds is disconnected, as softIoc
  eventually drops a client that never reads; its memory is released with it.
- Beacons go to ``EPICS_CA_REPEATER_PORT`` unless ``EPICS_CAS_BEACON_PORT`` says otherwise
  (EPICS base's rule; caproto always uses 5065), and a beacon nobody listens to is not an
  error worth a traceback every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import caproto as ca
from caproto import apply_arr_filter
from caproto._utils import apply_deadband_filter
from caproto.asyncio.server import Context as CaprotoContext
from caproto.asyncio.server import VirtualCircuit as CaprotoCircuit
from caproto.asyncio.utils import _create_udp_socket, _UdpTransportWrapper
from caproto.server.common import Subscription, SubscriptionSpec
from caproto.server.common import host_endian as HOST_ENDIAN

from .monitor_wire import Buffer, MonitorBytes

log = logging.getLogger(__name__)

#: How many updates of one subscription may wait for a slow client; a further update replaces
#: the newest waiting one. EPICS base's dbEvent allows 4 (EVENTENTRIES).
PENDING_PER_SUBSCRIPTION = 4

#: Seconds a client may take nothing at all before it is disconnected (``--client-timeout``).
DEFAULT_SEND_TIMEOUT = 30.0

#: Beacons: the first period and the growth per beacon, as the CA specification recommends.
MIN_BEACON_PERIOD = 0.02
BEACON_BACKOFF = 2


@dataclass(eq=False)
class _Entry:
    """One thing to send: a monitor update (``subscriptionid`` set) or a reply."""

    commands: list[Any]
    subscriptionid: int | None = None
    sub_spec: SubscriptionSpec | None = None
    sub: Subscription | None = None
    done: asyncio.Future[None] | None = None
    urgent: bool = False  # a State-like PV: sent at once, never held for a batch


@dataclass
class FanoutStats:
    """What the fan-out did for one client (for the log and the tests)."""

    sent: int = 0
    replaced: int = 0
    batches: int = 0
    pending: dict[int, list[_Entry]] = field(default_factory=dict)


class FanoutCircuit(CaprotoCircuit):
    """A client's circuit with one ordered, bounded outbox and one task that sends it."""

    context: FanoutContext

    def __init__(self, circuit: ca.VirtualCircuit, client: Any, context: FanoutContext) -> None:
        super().__init__(circuit, client, context)
        self._outbox: deque[_Entry] = deque()
        self._wake = asyncio.Event()
        self._last_send = 0.0
        self._sending = True  # False once the sending task has ended: nothing more goes out
        self.stats = FanoutStats()

    async def _on_disconnect(self) -> None:
        """caproto's, then end the circuit's command loop, which caproto leaves waiting on its
        queue for good: that task kept every disconnected circuit (its queues, buffers and
        transport) alive, about 20 kB per client connection, so a `caput` a minute grew the IOC
        without bound. Puts in progress (``handle_write``) end by themselves, as before."""
        await super()._on_disconnect()
        current = asyncio.current_task()
        for task in list(self.tasks.tasks):
            name = getattr(task.get_coro(), "__qualname__", "")
            if task is not current and not task.done() and name.endswith("command_queue_loop"):
                task.cancel()

    # -- posting (never awaits) -------------------------------------------------------------

    def post_monitor(self, sub_spec: SubscriptionSpec, sub: Subscription, command: Any) -> None:
        """Queue a monitor update (a :class:`.MonitorBytes`, or a caproto command when it could
        not be serialised ahead); past the bound, it replaces the newest one waiting."""
        if not (self.connected and self._sending):
            return
        waiting = self.stats.pending.setdefault(sub.subscriptionid, [])
        if len(waiting) >= PENDING_PER_SUBSCRIPTION:
            waiting[-1].commands[0] = command  # the client gets the latest news, as in rsrv
            self.stats.replaced += 1
            return
        urgent = sub_spec.db_entry in self.context.urgent
        entry = _Entry([command], sub.subscriptionid, sub_spec, sub, urgent=urgent)
        waiting.append(entry)
        self._outbox.append(entry)
        self._wake.set()

    async def send(self, *commands: Any) -> None:
        """Queue replies behind everything already posted; return once they are on the wire
        (or the client is gone).

        Waiting keeps caproto's back-pressure on request/reply traffic (a client that sends
        requests and never reads cannot grow the outbox) and the order makes a put's
        completion follow the monitors its put caused.
        """
        if not (self.connected and self._sending) or not commands:
            return  # as caproto: nothing to a client that is gone (its reader cleans up)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append(_Entry(list(commands), done=done))
        self._wake.set()
        await done

    def _busy(self) -> bool:
        """A put of this client is still being handled, or something waits to be sent."""
        if self._sending and self.connected and self._outbox:
            return True
        return any(
            not task.done() and "handle_write" in task.get_coro().__qualname__
            for task in self.tasks.tasks
        )

    # -- sending (one task per client) --------------------------------------------------------

    async def subscription_queue_loop(self) -> None:
        """Send the outbox in order, as one write per wake-up; stalls end in a disconnect."""
        self.events_on.set()
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                await self._gather_burst()
                self._wake.clear()
                entries = list(self._outbox)
                self._outbox.clear()
                self.stats.pending.clear()
                try:
                    buffers, messages = self._buffers(entries)
                    if buffers:
                        await asyncio.wait_for(
                            self._send_buffers(*buffers), self.context.send_timeout
                        )
                        self.stats.batches += 1
                        self._last_send = loop.time()
                        self.stats.sent += messages
                except TimeoutError:
                    self._give_up(
                        entries, f"it has read nothing for {self.context.send_timeout:g} s"
                    )
                    return
                except (OSError, ca.CaprotoNetworkError) as exc:
                    # the client went away: caproto's reader says so (INFO), nothing to warn of
                    self._give_up(entries, f"sending failed ({exc})", logging.DEBUG)
                    return
                except Exception:  # a bug of ours or caproto's: not a silent end of monitors
                    log.exception("sending to a client failed")
                    self._give_up(entries, "sending failed", logging.DEBUG)
                    return
                _resolve(entries)
        except asyncio.CancelledError:
            # ended by caproto's _on_disconnect, which awaits this task: ending quietly lets
            # the disconnect go on (raising here cancelled the client's handler instead, so the
            # circuit was never removed from Context.circuits: ~20 kB kept per connection)
            return
        finally:
            self._sending = False
            _resolve(self._outbox)
            self._outbox.clear()

    async def _gather_burst(self) -> None:
        """Under a fast stream of monitors, send at most once per ``batch_time``.

        A first update after a quiet spell, any reply and any update of an urgent PV (State,
        ExitStatus, Busy, Start: :attr:`FanoutContext.urgent`) go at once (caproto delays every
        update by its batch time); only back-to-back monitors wait, to share one write.
        """
        batch_time = self.context.batch_time
        if batch_time <= 0 or any(
            entry.subscriptionid is None or entry.urgent for entry in self._outbox
        ):
            return
        remaining = self._last_send + batch_time - asyncio.get_running_loop().time()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _buffers(self, entries: Iterable[_Entry]) -> tuple[list[Buffer], int]:
        """The bytes to send and how many messages they hold, in the entries' order.

        Monitors of subscriptions cancelled meanwhile are left out, as caproto does, so that
        no update follows its EventCancelResponse; while the client has turned events off, a
        dropped monitor is re-sent when it turns them on. Replies go through caproto's
        protocol state machine; monitors come serialised (:mod:`.monitor_wire`).
        """
        live = {sub.subscriptionid for subs in self.subscriptions.values() for sub in subs}
        buffers: list[Buffer] = []
        messages = 0
        for entry in entries:
            if entry.subscriptionid is None:
                buffers.extend(self.circuit.send(*entry.commands))
                messages += len(entry.commands)
            elif not self.events_on.is_set():
                if entry.sub_spec is not None and entry.sub is not None:
                    resend = self.subscriptions_to_resend.setdefault(entry.sub_spec, [])
                    if entry.sub not in resend:
                        resend.append(entry.sub)
            elif entry.subscriptionid in live:
                (message,) = entry.commands
                if isinstance(message, MonitorBytes):
                    buffers.extend(message.for_subscription(entry.subscriptionid))
                else:
                    buffers.extend(self.circuit.send(message))
                messages += 1
        return buffers, messages

    def _give_up(self, entries: list[_Entry], why: str, level: int = logging.WARNING) -> None:
        """Drop a client that cannot be sent to; caproto's reader then cleans it up."""
        host, port = self.circuit.address
        log.log(
            level,
            "disconnecting the client at %s:%d: %s (as softIoc drops a client that does not read)",
            host,
            port,
            why,
        )
        _resolve(entries)  # quietly: the waiting write tasks have nobody to answer
        transport = self.client.writer.transport
        transport.abort()  # close() would wait for the buffer to drain, which it never will


def _resolve(entries: Iterable[_Entry]) -> None:
    """Release whoever waits on these entries: sent, or the client is gone (caproto's own
    ``send`` returns quietly once a client has disconnected; its reader does the cleanup)."""
    for entry in entries:
        if entry.done is not None and not entry.done.done():
            entry.done.set_result(None)


class _DirectFanout:
    """Stands in for caproto's Context queue: each update is fanned out as it is put."""

    def __init__(self, context: FanoutContext) -> None:
        self._context = context

    async def put(self, update: Any) -> None:
        sub_specs, metadata, values, flags, sub = update
        self._context.fan_out(sub_specs, metadata, values, flags, sub)


class FanoutContext(CaprotoContext):
    """caproto's asyncio server Context with EPICS base's fan-out, ordering and beacons."""

    CircuitClass = FanoutCircuit
    beacon_socks: dict[tuple[str, int], tuple[str, Any]]  # (host, port) -> (interface, socket)

    def __init__(
        self,
        pvdb: dict[str, Any],
        interfaces: list[str] | None = None,
        *,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        batch_time: float = 0.0,
    ) -> None:
        super().__init__(pvdb, interfaces)
        self.send_timeout = send_timeout
        self.batch_time = batch_time
        #: PVs whose updates are never held for a batch (the IOC names its State-like PVs)
        self.urgent: set[Any] = set()
        self.subscription_queue = _DirectFanout(self)
        self._beacon_failures: set[tuple[tuple[str, int], type[BaseException]]] = set()

    def subscription_count(self) -> int:
        """How many monitor subscriptions the clients hold (on every PV)."""
        return sum(len(subscriptions) for subscriptions in self.subscriptions.values())

    async def subscription_queue_loop(self) -> None:
        """Nothing to do: updates are fanned out when posted (caproto starts this task)."""
        await asyncio.Event().wait()

    async def settle(self, timeout: float) -> bool:
        """At shutdown: let puts in progress finish and every client's outbox go out.

        A put whose completion waits for a plan's end (Start, Stop...) is released when the
        bridge publishes that end, but its completion is sent by the put's own task, which may
        not have run yet: ending the server at once would leave such a client without its
        completion. True when all settled within ``timeout`` s.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = any(circuit._busy() for circuit in list(self.circuits))
            if not busy:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)

    def fan_out(
        self,
        sub_specs: tuple[SubscriptionSpec, ...],
        metadata: Any,
        values: Any,
        flags: int,
        sub: Subscription | None,
    ) -> None:
        """Post one update to every matching subscription (or to ``sub``, a new one)."""
        if sub is not None:
            (sub_spec,) = sub_specs
            self._post(sub_spec, sub, metadata, values, flags, {})
            return
        for sub_spec in sub_specs:
            serialised: dict[tuple[Any, int], MonitorBytes | None] = {}  # per type and count
            for each in tuple(self.subscriptions[sub_spec]):
                self._post(sub_spec, each, metadata, values, flags, serialised)

    def _post(
        self,
        sub_spec: SubscriptionSpec,
        sub: Subscription,
        metadata: Any,
        values: Any,
        flags: int,
        serialised: dict[tuple[Any, int], MonitorBytes | None],
    ) -> None:
        """caproto's ``_subscription_queue_send`` up to its queue, then the circuit's outbox.

        The update is serialised once per data type and count (``serialised`` keeps it for
        the other subscribers of ``sub_spec``), except under a ``sync`` filter, which compares
        whole commands.
        """
        circuit: FanoutCircuit = sub.circuit
        if not circuit.events_on.is_set():
            to_resend = circuit.subscriptions_to_resend.setdefault(sub_spec, [])
            if sub not in to_resend:
                to_resend.append(sub)
            return
        values = apply_arr_filter(sub_spec.channel_filter.arr, values)
        data_count = sub.data_count or len(values)
        if data_count != len(values):
            values = values[:data_count]
        if sub.channel_filter.dbnd is not None:
            tracked = apply_deadband_filter(
                previous_value=self.last_dead_band.get(sub),
                new_value=values,
                sub=sub,
                flags=flags,
                host_endian=HOST_ENDIAN,
            )
            if tracked is None:
                return
            self.last_dead_band[sub] = tracked
        sync = sub.channel_filter.sync
        if sync is None:
            key = (sub.data_type, data_count)
            if key not in serialised:
                serialised[key] = MonitorBytes.build(values, metadata, sub.data_type, data_count)
            message = serialised[key]
            if message is not None:
                circuit.post_monitor(sub_spec, sub, message)
                return
        command = sub.channel.subscribe(
            data=values,
            metadata=metadata,
            data_type=sub.data_type,
            data_count=data_count,
            subscriptionid=sub.subscriptionid,
            status=1,
        )
        if sync is not None:
            last = self.last_sync_edge_update[sub][sync.s].get(sync.m)
            if last and last == command:
                return
            self.last_sync_edge_update[sub][sync.s][sync.m] = command
        circuit.post_monitor(sub_spec, sub, command)

    # -- beacons -------------------------------------------------------------------------

    def _beacon_port(self) -> int:
        """EPICS base: EPICS_CAS_BEACON_PORT if set, else EPICS_CA_REPEATER_PORT."""
        for name in ("EPICS_CAS_BEACON_PORT", "EPICS_CA_REPEATER_PORT"):
            text = os.environ.get(name, "").strip()
            if text.isdigit():
                return int(text)
        return 5065

    def _aim_beacons(self) -> None:
        """Re-aim caproto's beacon sockets (built with its fixed default port) at our port."""
        port = self._beacon_port()
        aimed: dict[tuple[str, int], tuple[str, Any]] = {}
        for (host, old_port), (interface, wrapper) in self.beacon_socks.items():
            if port == old_port or os.environ.get("EPICS_CAS_BEACON_PORT"):
                aimed[(host, old_port)] = (interface, wrapper)
                continue
            wrapper.close()
            sock = _create_udp_socket()
            sock.connect((host, port))
            aimed[(host, port)] = (interface, _UdpTransportWrapper(sock, (host, port)))
        self.beacon_socks = aimed

    async def broadcast_beacon_loop(self) -> None:
        """caproto's beacon loop, aimed as EPICS base aims it and without a traceback each.

        A refused beacon only means that no caRepeater listens on that host: EPICS base does
        not complain of it. Any other failure is logged once per address and kind.
        """
        self._aim_beacons()
        max_period = self.environ["EPICS_CAS_BEACON_PERIOD"]
        period = MIN_BEACON_PERIOD
        while True:
            for address, (interface, sock) in self.beacon_socks.items():
                try:
                    beacon = ca.Beacon(13, self.port, self.beacon_count, interface)
                    await sock.send(self.broadcaster.send(beacon))
                except OSError as exc:
                    self._beacon_failed(address, exc)
            self.beacon_count += 1
            period = min(max_period, period * BEACON_BACKOFF)
            await asyncio.sleep(period)

    def _beacon_failed(self, address: tuple[str, int], exc: OSError) -> None:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        if isinstance(cause, ConnectionRefusedError):
            log.debug("no beacon listener at %s:%d", *address)
            return
        key = (address, type(cause))
        level = logging.DEBUG if key in self._beacon_failures else logging.WARNING
        self._beacon_failures.add(key)
        log.log(level, "beacons to %s:%d fail: %s (said once)", *address, cause)
