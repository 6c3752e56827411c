"""The record adapters without Channel Access: event bits, deadbands, limits, refusal texts."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from caproto import ChannelType, SubscriptionType
from caproto._utils import CaprotoConversionError
from caproto.server import PVGroup

from runengine_ioc.ca.common import long_string, pv
from runengine_ioc.ca.fields import FieldReadOnly, guard_fields
from runengine_ioc.ca.limits import INT32_RANGE, completed
from runengine_ioc.ca.masks import EventFilter, install_masks, outside_deadband
from runengine_ioc.ca.put_checks import TextTooLong, explain, guard_lengths, plain, text_bytes

V, L, A, P = (
    SubscriptionType.DBE_VALUE,
    SubscriptionType.DBE_LOG,
    SubscriptionType.DBE_ALARM,
    SubscriptionType.DBE_PROPERTY,
)


class Records(PVGroup):
    progress = pv("Progress", "p", value=0.0, record="ai")
    name = pv("Name", "n", value="", dtype=ChannelType.STRING, record="stringout")
    text = long_string("Text", "t", length=8)
    state = pv(
        "State", "s", value="a", dtype=ChannelType.ENUM, enum_strings=("a", "b"), record="mbbi"
    )


@pytest.mark.parametrize(
    ("old", "new", "band", "moved"),
    [
        (0.0, 0.5, 0.0, True),
        (0.0, 0.0, 0.0, False),
        (0.0, 0.5, 1.0, False),
        (0.0, 1.5, 1.0, True),
        (0.0, 0.0, -1.0, True),  # a negative deadband posts every time
        (math.nan, math.nan, 0.0, False),
        (math.nan, 1.0, 5.0, True),
        (math.inf, math.inf, 0.0, False),
        (math.inf, -math.inf, 0.0, True),
        (1.0, math.inf, 1e300, True),
    ],
)
def test_deadband_as_epics(old: float, new: float, band: float, moved: bool) -> None:
    assert outside_deadband(old, new, band) is moved


def test_event_bits_follow_the_record_type() -> None:
    async def scenario() -> None:
        group = Records(prefix="X:")
        progress, name, text = group.progress, group.name, group.text
        progress.log_atol = 1.0
        filters = {ch: EventFilter(ch) for ch in (progress, name, text)}
        seen = {}

        for channel, event_filter in filters.items():

            async def publish(
                flags: int, f: EventFilter = event_filter, c: object = channel
            ) -> None:
                seen[c] = f.events(flags)

            channel.publish = publish
        await progress.write(0.5)
        assert seen[progress] == V  # moved, but less than ADEL
        await progress.write(1.6)
        assert seen[progress] == V | L
        await progress.write(1.6)
        assert seen[progress] == 0
        await name.write("a")
        assert seen[name] == V | L
        await name.write("a")
        assert seen[name] == 0  # stringout: on change only
        await text.write("a")
        await text.write("a")
        assert seen[text] == V | L  # waveform: always
        await progress.alarm.write(severity=2, status=3)
        assert seen[progress] == A
        await progress.write_metadata(units="mm")
        assert seen[progress] == P

    asyncio.run(scenario())


def test_install_masks_sets_the_archive_deadband() -> None:
    group = Records(prefix="X:")
    install_masks(group.pvdb, "X:")
    assert group.progress.log_atol == 1.0 and group.progress.value_atol == 0
    assert group.name._event_filter is not None


def test_limits_completed() -> None:
    assert completed(None, None, integer=True) is None
    assert completed(1, None, integer=True) == (1, INT32_RANGE[1])
    assert completed(None, 2.5, integer=False) == (-math.inf, 2.5)
    assert completed(-1, 1, integer=False) == (-1, 1)


def test_plain_values() -> None:
    assert plain(np.float64(2.0)) == "2"
    assert plain(1.5) == "1.5"
    assert plain(b"motr\0") == '"motr"'
    assert plain(np.array([1.0, 2.0])) == "[1, 2]"
    assert plain("x" * 50) == '"' + "x" * 37 + '..."'


def test_explain_conversion_errors() -> None:
    group = Records(prefix="X:")
    error = CaprotoConversionError("")
    text = explain(error, group.text, [b'{"a": 1}'], ChannelType.STRING)
    assert "use caput -S" in text
    assert explain(error, group.state, [b"c"], ChannelType.STRING) == (
        '"c" is not one of its states ("a", "b")'
    )
    assert "could not be converted" in explain(error, group.progress, [1], ChannelType.LONG)
    assert explain(ValueError("plain words"), group.progress) == "plain words"


def test_text_bytes() -> None:
    assert text_bytes(b"abc\0\0") == 3
    assert text_bytes("é") == 2
    assert text_bytes(np.frombuffer(b"ab\0", dtype=np.uint8)) == 2
    assert text_bytes(5) is None


def _chars(data: bytes) -> np.ndarray:
    """A char array as it arrives from the wire."""
    return np.frombuffer(data, dtype=np.uint8)


def test_guards_refuse_and_say_why() -> None:
    async def scenario() -> None:
        group = Records(prefix="X:")
        said: list[str] = []

        async def refuse(text: str) -> None:
            said.append(text)

        guard_fields(group.pvdb, "X:", refuse)
        guard_lengths(group.pvdb, "X:", refuse)
        with pytest.raises(FieldReadOnly):
            await group.state.fields["ZRST"].write_from_dbr([b"z"], ChannelType.STRING, None)
        assert group.state.enum_strings[0] == "a"
        with pytest.raises(TextTooLong):
            await group.text.write_from_dbr(_chars(b"12345678"), ChannelType.CHAR, None)
        await group.text.write_from_dbr(_chars(b"1234567"), ChannelType.CHAR, None)
        assert group.text.value == "1234567"
        assert said[0].startswith("State.ZRST: record fields belong to the IOC")
        assert said[1].startswith("Text: 8 bytes of text, more than it holds (7 bytes)")

    asyncio.run(scenario())
