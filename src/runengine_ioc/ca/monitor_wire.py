"""A monitor update serialised once for all its subscribers, not once per subscriber.

caproto builds an ``EventAddResponse`` for every subscription an update goes to (converting
the value and its metadata to bytes each time) and then runs each one through the circuit's
protocol state machine. With 100 clients on a PV that is 100 identical payloads and 100 state
machine passes per update: a third of the IOC's loop while a plan runs under many monitors.
EPICS base's server likewise formats an event once per type and count and only addresses it
per subscription.

The bytes of an update differ between subscribers of the same type and count only in the
header's ``parameter2``, the subscription id (the same offset in the standard and the extended
header). :class:`MonitorBytes` keeps the header and the payload of one update and gives each
subscription a copy of the 16 or 24 header bytes with its id in it, sharing the payload.

Skipping the state machine is safe for these messages: a monitor update on a connected
channel changes no protocol state. The fan-out sends them only for subscriptions still live
on the circuit (see :meth:`.FanoutCircuit._buffers`), which is what the state machine checks.
"""

from __future__ import annotations

import struct
from typing import Any

from caproto import ChannelType, EventAddResponse

#: ECA_NORMAL, as caproto's server sends it with every monitor update
_NORMAL = 1
_SUBSCRIPTION_ID = struct.Struct(">I")
_SUBSCRIPTION_ID_OFFSET = 12  # parameter2, in both header layouts

Buffer = bytes | bytearray | memoryview


class MonitorBytes:
    """One update's wire bytes for one (data type, count), ready for any subscription id."""

    __slots__ = ("_header", "_payload")

    def __init__(self, header: bytes, payload: tuple[Buffer, ...]) -> None:
        self._header = header
        self._payload = payload

    @classmethod
    def build(
        cls, values: Any, metadata: Any, data_type: ChannelType, data_count: int
    ) -> MonitorBytes | None:
        """Serialise an update, or None when it has no payload.

        caproto's client (and libca) read an empty ``EventAddResponse`` as the end of a
        subscription, and the circuit's state machine is what keeps that straight: such an
        update goes the ordinary way (:meth:`caproto.ServerChannel.subscribe`).
        """
        command = EventAddResponse(values, data_type, data_count, _NORMAL, 0, metadata=metadata)
        if command.payload_size == 0:
            return None
        return cls(bytes(command.header), tuple(command.buffers))

    def for_subscription(self, subscriptionid: int) -> list[Buffer]:
        """The buffers to send to one subscription (its own header, the shared payload)."""
        header = bytearray(self._header)
        _SUBSCRIPTION_ID.pack_into(header, _SUBSCRIPTION_ID_OFFSET, subscriptionid)
        return [header, *self._payload]
