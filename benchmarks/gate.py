"""What the gate costs: the access check per write and per read, and a whole gated write.

``python -m benchmarks.gate`` (a few seconds, no IOC, no network). It times, in-process:

1. the access check of a write (``AccessControl.write_refusal`` with the client's identity,
   as the gate calls it), with ``examples/direct.acf`` in service and the baton held by
   someone else (the longest path);
2. the rights of a read (``Gate._rights``: what caproto's ``auth_read`` asks on every read,
   and ``check_access`` at connect);
3. a whole write to a caproto channel through the gate (check, caller, write, audit line
   flushed to a file) against the same write straight to ``write_from_dbr``.

Per-point publishing does not pass through the gate at all (the IOC's own writes call
``ChannelData.write``, never ``auth_write``), so there is nothing to time per point.
Medians of 7 repetitions; the goal is < 5 us per write check and nothing measurable per read.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from runengine_ioc.access.acf import AccessConfig
from runengine_ioc.access.audit import AuditLog
from runengine_ioc.access.control import AccessControl
from runengine_ioc.access.identity import Client
from runengine_ioc.ca.gate import Gate, GateSettings

EXAMPLES = Path(__file__).parents[1] / "examples"
REPEATS = 7


def per_call(func: object, calls: int) -> float:
    """Median seconds per call of ``func()`` over REPEATS timed loops."""
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            func()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


class Demo(PVGroup):
    value = pvproperty(name="Value", value=0.0, dtype=ChannelType.DOUBLE)


async def gated_write(tmp: Path, calls: int) -> tuple[float, float]:
    """Seconds per write: straight to write_from_dbr, and through the gate with audit."""
    config = AccessConfig.from_file(EXAMPLES / "direct.acf")
    group = Demo("B:")
    channel = group.pvdb["B:Value"]
    plain = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for index in range(calls):
            await channel.write_from_dbr([float(index)], ChannelType.DOUBLE, None)
        plain.append((time.perf_counter() - start) / calls)

    async def refuse(text: str) -> None:
        return None

    settings = GateSettings(
        control=AccessControl(config),
        audit=AuditLog(tmp / "audit.jsonl"),
        acf_path="direct",
        overrides={"Value": "CONTROL"},
    )
    gate = Gate(settings, refuse=refuse, registry=lambda: None)  # type: ignore[arg-type,return-value]
    gate.install(group.pvdb, "B:")
    gated = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for index in range(calls):
            await channel.auth_write("ctl1", "alice", [float(index)], ChannelType.DOUBLE, None)
        gated.append((time.perf_counter() - start) / calls)
    settings.audit.close()  # type: ignore[union-attr]
    return statistics.median(plain), statistics.median(gated)


def main() -> None:
    config = AccessConfig.from_file(EXAMPLES / "direct.acf")
    control = AccessControl(config)
    control.baton.take(Client("bob", "ctl2"))
    check = per_call(lambda: control.write_refusal("CONTROL", Client("alice", "ctl1")), 100_000)
    open_control = AccessControl(None)
    check_open = per_call(
        lambda: open_control.write_refusal("CONTROL", Client("alice", "ctl1")), 100_000
    )

    async def refuse(text: str) -> None:
        return None

    gate = Gate(GateSettings(control=control), refuse=refuse, registry=lambda: None)  # type: ignore[arg-type,return-value]
    read = per_call(lambda: gate._rights("CONTROL", True, "ctl1", "alice"), 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        plain, gated = asyncio.run(gated_write(Path(tmp), 5_000))
    print("| what | median per call |")
    print("|---|---|")
    print(f"| write check, direct.acf, baton held by another | {check * 1e6:.2f} us |")
    print(f"| write check, no --acf (open) | {check_open * 1e6:.2f} us |")
    print(f"| read rights (caproto asks on every read) | {read * 1e6:.2f} us |")
    print(f"| caproto write_from_dbr, ungated | {plain * 1e6:.1f} us |")
    print(f"| the same write through the gate, audit line flushed | {gated * 1e6:.1f} us |")


if __name__ == "__main__":
    main()
