"""A hostile client in its own process: random values of every CA type and length to some PVs.

``python fuzz_client.py SEED COUNT STATUS_PV PV [PV ...]`` writes COUNT random values, each to
a random PV of the list with a random DBR type and element count, with put-callback, one at a
time. After each refused put it reads STATUS_PV, which must say ``refused: ...``. Values whose
first element means 1 (numeric 1, or the text ``1`` or ``Start``) are never sent to command
PVs (names ending in Start, Pause, PauseDeferred, Resume, Stop, Abort, Halt, Reload): those
would be valid commands, not junk. Prints one JSON line of figures at the end.
"""

from __future__ import annotations

import ctypes
import json
import math
import random
import struct
import sys
import time
from collections import Counter

from caproto import ChannelType
from epics import ca, dbr

DEBUG = False
COMMANDS = ("Start", "Pause", "PauseDeferred", "Resume", "Stop", "Abort", "Halt", "Reload")
TYPES = (
    ChannelType.STRING,
    ChannelType.INT,
    ChannelType.FLOAT,
    ChannelType.ENUM,
    ChannelType.CHAR,
    ChannelType.LONG,
    ChannelType.DOUBLE,
)
LENGTHS = (0, 1, 1, 1, 1, 2, 3, 16, 40, 41, 255, 1000, 4095, 4096, 4097, 8000)
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, -0.0, 1.0000001)
SNIPPETS = (b'{"num": 3}', b"{", b"[]", b"null", b"det", b"scan", b"\x00", b"\xff\xfe", b"1 ", b"0")


def random_bytes(rng: random.Random, length: int) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return bytes(rng.randrange(256) for _ in range(length))
    if kind < 0.6:
        text = "".join(
            chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x80, 0x3000))))
            for _ in range(length)
        )
        return text.encode("utf-8")[:length] if length else b""
    out = b""
    while len(out) < length:
        out += rng.choice(SNIPPETS)
    return out[:length]


def junk(rng: random.Random, dtype: ChannelType) -> list:
    length = rng.choice(LENGTHS)
    if dtype == ChannelType.STRING:
        return [random_bytes(rng, rng.randrange(0, 40)) for _ in range(min(length, 20) or 1)]
    if dtype == ChannelType.CHAR:
        return list(random_bytes(rng, length)) or [0]
    count = max(1, min(length, 2000))
    if dtype in (ChannelType.FLOAT, ChannelType.DOUBLE):
        return [
            rng.choice(SPECIAL_FLOATS) if rng.random() < 0.3 else rng.uniform(-1e6, 1e6)
            for _ in range(count)
        ]
    bounds = {
        ChannelType.INT: (-32768, 32767),
        ChannelType.ENUM: (0, 65535),
        ChannelType.LONG: (-(2**31), 2**31 - 1),
    }[dtype]
    small = rng.random() < 0.5
    return [rng.randint(-3, 20) if small else rng.randint(*bounds) for _ in range(count)]


def means_one(dtype: ChannelType, data: list) -> bool:
    """The IOC's definition of a command: state 1 by number (exactly 1) or by text."""
    if dtype in (ChannelType.STRING, ChannelType.CHAR):
        raw = data[0] if dtype == ChannelType.STRING else bytes(data)
        text = raw.split(b"\x00")[0].decode("latin-1").strip()
        return text == "1" or text in COMMANDS
    if dtype == ChannelType.FLOAT:  # as sent: 1.0000001 is 1.0 in single precision
        return struct.unpack("f", struct.pack("f", max(min(data[0], 3.4e38), -3.4e38)))[0] == 1
    return data[0] == 1


CTYPES = {
    ChannelType.STRING: None,
    ChannelType.INT: ctypes.c_int16,
    ChannelType.FLOAT: ctypes.c_float,
    ChannelType.ENUM: ctypes.c_uint16,
    ChannelType.CHAR: ctypes.c_uint8,
    ChannelType.LONG: ctypes.c_int32,
    ChannelType.DOUBLE: ctypes.c_double,
}
_done: dict[int, int] = {}
_keep: list = []  # put-callback arguments stay alive: a late callback must find its object


_on_put = dbr.make_callback(
    lambda args: _done.__setitem__(int(args.usr), int(args.status)), dbr.event_handler_args
)


def put(chid, dtype: ChannelType, data: list, tag: int, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    """ca_array_put_callback with this DBR type and count; True if the server accepted it."""
    # libca itself refuses more elements than the channel has: send at most that many
    count = max(1, min(len(data), ca.element_count(chid)))
    data = data[:count]
    if dtype == ChannelType.STRING:
        buffer = (ctypes.c_char * (40 * count))()
        for i, item in enumerate(data):
            ctypes.memmove(ctypes.byref(buffer, 40 * i), item, len(item))
    else:
        ctype = CTYPES[dtype]
        values = [min(max(v, -3.4e38), 3.4e38) if dtype == ChannelType.FLOAT else v for v in data]
        buffer = (ctype * count)(*values)
    usr = ctypes.py_object(tag)
    _keep.append(usr)
    status = ca.libca.ca_array_put_callback(int(dtype), count, chid, buffer, _on_put, usr)
    if status != 1:
        raise RuntimeError(f"ca_array_put_callback: {ca.message(status)}")
    ca.flush_io()
    deadline = time.monotonic() + timeout
    while tag not in _done:
        ca.poll(1e-4, 1.0)
        if time.monotonic() > deadline:
            raise TimeoutError("no put callback")
    return _done.pop(tag) == 1


def read_status(chid) -> tuple[bytes, float]:  # type: ignore[no-untyped-def]
    value = ca.get_with_metadata(
        chid, ftype=dbr.TIME_CHAR, as_string=False, as_numpy=False, timeout=10
    )
    assert value is not None
    data = bytes(bytearray(int(v) & 0xFF for v in value["value"])).split(b"\x00")[0]
    return data, float(value["timestamp"])


def main() -> None:
    seed, count, status_name, *names = sys.argv[1:]
    rng = random.Random(int(seed))
    ca.initialize_libca()
    chids = {name: ca.create_channel(name, connect=False, auto_cb=False) for name in names}
    status = ca.create_channel(status_name, connect=False, auto_cb=False)
    for chid in (*chids.values(), status):
        assert ca.connect_channel(chid, timeout=10), "did not connect"
    figures: Counter = Counter()
    unexplained: list[str] = []
    accepted_commands: list[str] = []
    _, last_status = read_status(status)
    for tag in range(1, int(count) + 1):
        name = rng.choice(names)
        dtype = rng.choice(TYPES)
        data = junk(rng, dtype)
        if name.rsplit(":", 1)[-1] in COMMANDS and means_one(dtype, data):
            figures["skipped_valid_commands"] += 1
            continue
        figures["tried"] += 1
        figures[f"type_{dtype.name}"] += 1
        try:
            ok = put(chids[name], dtype, data, tag)
        except Exception as exc:
            if DEBUG:
                print(name, dtype.name, len(data), type(exc).__name__, exc, file=sys.stderr)
            figures[f"client_{type(exc).__name__}"] += 1
            if len(unexplained) < 10:
                unexplained.append(f"{name} {dtype.name}[{len(data)}] {data[:3]!r}: {exc}")
            continue
        if ok:
            figures["accepted"] += 1
            if name.rsplit(":", 1)[-1] in COMMANDS:
                figures["accepted_commands"] += 1
                if len(accepted_commands) < 20:
                    accepted_commands.append(f"{name} {dtype.name}[{len(data)}] {data[:2]!r}")
            continue
        figures["refused"] += 1
        text, stamp = read_status(status)
        fresh = stamp > last_status
        last_status = stamp
        if not (fresh and text.startswith(b"refused: ")):
            figures["refused_without_status"] += 1
            if len(unexplained) < 10:
                unexplained.append(f"{name} {dtype.name}[{len(data)}]: {text[:120]!r}")
    report = {"figures": dict(figures), "unexplained": unexplained, "accepted": accepted_commands}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
