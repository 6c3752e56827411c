"""bluesky-queueserver startup code for the benchmarks: the IOC's sim devices, count plan and sink.

The RE Manager loads this into its worker. Everything mirrors what the IOC runs: ophyd's
simulated devices (``ophyd.sim.hw``), ``runengine_ioc.plans.count`` and the local files sink
(one JSON-lines file per run), in ``$RUNENGINE_BENCH_QS_DATA`` (a temp dir set by the harness).
"""

import os
import tempfile

from bluesky import RunEngine
from ophyd.sim import hw

from runengine_ioc.data.files import LocalFilesSink
from runengine_ioc.plans import count as _count

_sim = hw()
det = _sim.det
motor = _sim.motor

RE = RunEngine({}, context_managers=[])
RE.subscribe(LocalFilesSink(os.environ.get("RUNENGINE_BENCH_QS_DATA") or tempfile.mkdtemp()))


def count(detectors, num=1, delay=0):
    """runengine_ioc.plans.count (queueserver does not parse its Annotated hints)."""
    yield from _count(detectors, num=num, delay=delay)
