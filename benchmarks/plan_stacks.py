"""What bluesky's per-stub stack formatting costs, in the IOC and in-process, before and after.

``python -m benchmarks.plan_stacks [--repeats R] [--num N]`` runs count(det, num=N) in four
arms, interleaved (the order rotates per repetition): the IOC with bluesky's own eager
``Plan.__init__`` and with the lazy one it installs (``engine/bluesky_adapter.py``), and the
in-process baseline (``benchmarks.inprocess``) likewise. The time is stop minus start document
time from each run's file; ratios are paired within a repetition, then summarised as median
(min-max). See docs/upstream/bluesky-lazy-stack.md.

``python -m benchmarks.plan_stacks inproc DIR [--lazy]`` is the in-process helper.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import stats
from .procs import EPICS_BIN, IOC, Processes, ca, free_port, latest_run, run_times
from .run import COUNT, JsonProc, alternate, count_args

EAGER = "import sys, runengine_ioc.cli as c; c.install_lazy_plan_stacks = lambda: False; "
LAZY = "import sys, runengine_ioc.cli as c; "


class LauncherIOC(IOC):
    """The benchmark IOC, started through a ``python -c`` line (to keep bluesky eager)."""

    def __init__(self, *args: Any, lazy: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def start(self, timeout: float = 60.0) -> float:
        code = (LAZY if self.lazy else EAGER) + "sys.exit(c.main(sys.argv[1:]))"
        with open(self.log_path, "ab") as log:
            self.proc = self.procs.popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    "--prefix",
                    self.prefix,
                    "--data-dir",
                    str(self.data_dir),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        t0 = time.perf_counter()
        while time.perf_counter() < t0 + timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"IOC exited at start-up:\n{self.log_path.read_text()}")
            if ca("caget", self.env, "-t", "-w", "0.2", self.pv("State"))[0] == 0:
                return time.perf_counter() - t0
        raise TimeoutError(f"IOC did not answer within {timeout} s")


def inproc_main(data_dir: str, lazy: bool) -> None:
    if lazy:
        from runengine_ioc.engine.bluesky_adapter import install_lazy_plan_stacks

        install_lazy_plan_stacks()
    from .inprocess import main

    main(data_dir)


def run(repeats: int, num: int) -> dict[str, Any]:
    procs = Processes()
    samples: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="runengine-bench-stacks-") as tmp:
        work = Path(tmp)
        try:
            repeater = free_port()
            procs.popen(
                [str(EPICS_BIN / "caRepeater")],
                env=dict(os.environ, EPICS_CA_REPEATER_PORT=str(repeater)),
            )
            iocs, drivers, baselines = {}, {}, {}
            for lazy, name in ((False, "eager"), (True, "lazy")):
                ioc = LauncherIOC(procs, repeater, work, name, lazy=lazy)
                ioc.start()
                iocs[name] = ioc
                drivers[name] = JsonProc(
                    procs,
                    ["benchmarks.client", ioc.prefix],
                    work / f"client-{name}.log",
                    env=ioc.env,
                )
                args = ["benchmarks.plan_stacks", "inproc", str(work / f"inproc-{name}")]
                baselines[name] = JsonProc(
                    procs, args + (["--lazy"] if lazy else []), work / f"inproc-{name}.log"
                )
            arms = ["ioc_eager", "ioc_lazy", "inproc_eager", "inproc_lazy"]
            for rep in range(repeats):
                for arm in alternate(arms, rep):
                    where, name = arm.split("_")
                    if where == "ioc":
                        ioc = iocs[name]
                        drivers[name].call(op="configure", plan=COUNT, args=count_args(num))
                        before = {p.name for p in ioc.runs()}
                        ioc.caput("Start", 1, "-c", "-w", "600")
                        start, stop, events = run_times(latest_run(ioc.data_dir, before))
                        assert events == num
                        samples[arm].append(stop - start)
                    else:
                        reply = baselines[name].call(op="count", num=num)
                        assert reply["events"] == num
                        samples[arm].append(reply["doc"])
                print(f"repetition {rep + 1}/{repeats}", file=sys.stderr, flush=True)
            for proc in (*drivers.values(), *baselines.values()):
                proc.close()
            for ioc in iocs.values():
                ioc.stop()
        finally:
            procs.close()
    return dict(samples)


def report(samples: dict[str, list[float]], num: int) -> str:
    lines = [
        f"count(det, num={num}); ms per point, median (min-max) of {len(samples['ioc_eager'])}"
    ]
    for arm, values in samples.items():
        per_point = [1000.0 * v / num for v in values]
        lines.append(f"  {arm:13s} {stats.fmt_summary(stats.summarize(per_point))} ms")
    pairs = [
        ("IOC / in-process, both eager (before)", "ioc_eager", "inproc_eager"),
        ("IOC lazy / in-process eager (after, vs plain bluesky)", "ioc_lazy", "inproc_eager"),
        ("IOC / in-process, both lazy (after, like for like)", "ioc_lazy", "inproc_lazy"),
        ("IOC lazy / IOC eager", "ioc_lazy", "ioc_eager"),
        ("in-process lazy / eager", "inproc_lazy", "inproc_eager"),
    ]
    for label, a, b in pairs:
        lines.append(f"  {label}: {stats.fmt_ratio(stats.ratio_summary(samples[a], samples[b]))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["inproc"]:
        inproc_main(argv[1], "--lazy" in argv)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the samples here")
    args = parser.parse_args(argv)
    samples = run(args.repeats, args.num)
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1))
    print(report(samples, args.num))
    return 0


if __name__ == "__main__":
    sys.exit(main())
