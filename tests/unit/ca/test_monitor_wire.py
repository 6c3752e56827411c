"""A monitor serialised once is, for each subscription, byte for byte what caproto would send."""

from __future__ import annotations

import array

import pytest
from caproto import ChannelType, EventAddResponse

from runengine_ioc.ca.monitor_wire import MonitorBytes


def caproto_bytes(values, metadata, data_type, count, subscriptionid):
    command = EventAddResponse(values, data_type, count, 1, subscriptionid, metadata=metadata)
    return bytes(command.header) + b"".join(bytes(b) for b in command.buffers)


def ours(message: MonitorBytes, subscriptionid: int) -> bytes:
    return b"".join(bytes(b) for b in message.for_subscription(subscriptionid))


@pytest.mark.parametrize(
    ("values", "data_type"),
    [
        ([3.5], ChannelType.DOUBLE),
        ([7], ChannelType.LONG),
        ([b"running"], ChannelType.STRING),
        (array.array("d", range(70_000)), ChannelType.DOUBLE),  # an extended header
    ],
    ids=["double", "long", "string", "70000 doubles"],
)
def test_each_subscription_gets_caproto_s_bytes_with_its_own_id(values, data_type):
    count = len(values)
    message = MonitorBytes.build(values, None, data_type, count)
    assert message is not None
    for subscriptionid in (0, 1, 4242, 2**32 - 1):
        assert ours(message, subscriptionid) == caproto_bytes(
            values, None, data_type, count, subscriptionid
        )


def test_metadata_goes_with_the_payload():
    from caproto._dbr import DBR_TIME_DOUBLE

    metadata = DBR_TIME_DOUBLE(status=1, severity=2)
    metadata.secondsSinceEpoch, metadata.nanoSeconds = 1_000_000, 5
    message = MonitorBytes.build([2.5], metadata, ChannelType.TIME_DOUBLE, 1)
    assert message is not None
    assert ours(message, 9) == caproto_bytes([2.5], metadata, ChannelType.TIME_DOUBLE, 1, 9)


def test_subscriptions_share_the_payload_but_not_the_header():
    message = MonitorBytes.build([1.0, 2.0], None, ChannelType.DOUBLE, 2)
    assert message is not None
    first, second = message.for_subscription(1), message.for_subscription(2)
    assert first[0] != second[0]
    assert all(a is b for a, b in zip(first[1:], second[1:], strict=True))


def test_an_update_without_payload_is_left_to_caproto_s_state_machine():
    # an empty EventAddResponse means "subscription ended" to the circuit's state machine
    assert MonitorBytes.build([], None, ChannelType.DOUBLE, 0) is None
