"""Run every benchmark and write ``results/<stamp>.md`` (the tables) and ``<stamp>.json`` (raw).

``python -m benchmarks.run [--quick] [--repeats N] [--no-queueserver] [--out DIR]
[--only SECTION,...]``

Sections (see benchmarks/README.md): per-point overhead, control latency, fan-out, footprint,
each side by side with bluesky-queueserver where it has an equivalent. Compared runs are
interleaved, their order alternating from one repetition to the next, and ratios are taken
within each repetition.

``python -m benchmarks.run --profile`` instead records the IOC with py-spy during a
count(10000) and writes the flame graph and a summary of the hottest frames to ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.polling import poll

from . import stats
from .procs import (
    EPICS_BIN,
    IOC,
    QUIET_PVS,
    STATUS_PVS,
    Processes,
    cpu_seconds,
    free_port,
    latest_run,
    rss_and_threads,
    run_times,
    steal_seconds,
)
from .report import report, summarize_profile, versions

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
COUNT = "count"
#: The sections, in the order they run; ``--only`` picks some of them (default: all).
SECTIONS = ("footprint", "latency", "points", "fanout")


@dataclass
class Config:
    repeats: int = 7
    startup_repeats: int = 7
    points: tuple[int, ...] = (100, 1000, 10000)
    qs_points: tuple[int, ...] = (100, 1000)
    fanout: tuple[int, ...] = (0, 10, 50, 100)
    fanout_points: int = 1000
    #: also run each client count on PVs that do not change (what the clients cost by running)
    fanout_quiet: bool = True
    plans: int = 1000
    settle: float = 0.3
    queueserver: bool = True
    quick: bool = False
    switch_interval: float | None = None
    update_budget: int | None = None
    sections: tuple[str, ...] = SECTIONS
    out: Path = field(default_factory=lambda: HERE / "results")


class JsonProc:
    """A helper process speaking one JSON line per command (benchmarks.client / .inprocess)."""

    def __init__(
        self, procs: Processes, args: list[str], log: Path, env: dict[str, str] | None = None
    ):
        with open(log, "ab") as err:
            self.proc = self._start(procs, args, err, env)
        hello = self._read()
        if not hello.get("ready"):
            raise RuntimeError(f"{args}: {hello}; see {log}")

    @staticmethod
    def _start(
        procs: Processes, args: list[str], err: Any, env: dict[str, str] | None
    ) -> subprocess.Popen[Any]:
        return procs.popen(
            [sys.executable, "-m", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=str(HERE.parent),
        )

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper process ended (exit {self.proc.poll()})")
        return dict(json.loads(line))

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"{command}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            Processes.end(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def count_args(num: int) -> dict[str, Any]:
    return {"detectors": ["det"], "num": num}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def alternate(items: list[Any], rep: int) -> list[Any]:
    """The compared arms in rotating order (A B, B A, ... for two)."""
    k = rep % len(items)
    return items[k:] + items[:k]


# ------------------------------------------------------------------- sections
def bench_startup(cfg: Config, procs: Processes, work: Path, repeater: int) -> dict[str, list]:
    from .queueserver import QueueServer

    raw: dict[str, list] = collections.defaultdict(list)
    for rep in range(cfg.startup_repeats):
        arms = ["ioc", "qs"] if cfg.queueserver else ["ioc"]
        for arm in alternate(arms, rep):
            if arm == "ioc":
                ioc = IOC(procs, repeater, work, f"s{rep}")
                raw["ioc_startup"].append(ioc.start())
                time.sleep(1.0)
                rss, threads = rss_and_threads([ioc.pid])
                raw["ioc_idle_rss"].append(rss)
                raw["ioc_idle_threads"].append(threads)
                ioc.stop()
            else:
                qs = QueueServer(procs, work, f"s{rep}")
                times = qs.start()
                raw["qs_startup_manager"].append(times["manager"])
                raw["qs_startup_environment"].append(times["environment"])
                time.sleep(1.0)
                rss, threads = rss_and_threads(qs.pids())
                raw["qs_idle_rss"].append(rss)
                raw["qs_idle_threads"].append(threads)
                raw["qs_idle_processes"].append(len(qs.pids()))
                raw["redis_idle_rss"].append(rss_and_threads([qs.redis_pid()])[0])
                qs.stop()
        log(f"startup {rep + 1}/{cfg.startup_repeats}")
    return dict(raw)


def bench_control(
    cfg: Config, ioc: IOC, driver: JsonProc, baseline: Any, qs: Any
) -> dict[str, list]:
    raw: dict[str, list] = collections.defaultdict(list)
    # a long plan (2 ms a point: over half an hour), within the IOC's --max-points (10**6)
    driver.call(op="configure", plan=COUNT, args=count_args(10**6))
    data = str(ioc.data_dir)
    for rep in range(cfg.repeats):
        arms = ["ioc", "inproc", "qs"] if qs is not None else ["ioc", "inproc"]
        for arm in alternate(arms, rep):
            if arm == "ioc":
                r = driver.call(op="put", pv="Start", state="running", file="start", dir=data)
                if r["state"] is None:
                    raise RuntimeError(f"Start: State never showed running; see {ioc.log_path}")
                raw["start_running"].append(r["state"])
                raw["start_document"].append(r["file"])
                time.sleep(cfg.settle)
                r = driver.call(op="put", pv="Pause", state="paused")
                raw["pause_paused"].append(r["state"])
                time.sleep(cfg.settle / 2)
                r = driver.call(op="put", pv="Resume", state="running")
                raw["resume_running"].append(r["state"])
                time.sleep(cfg.settle)
                r = driver.call(op="put", pv="Abort", state="idle", file="stop", dir=data)
                raw["abort_idle"].append(r["state"])
                raw["abort_stop_document"].append(r["file"])
                time.sleep(cfg.settle)
            elif arm == "inproc":
                raw["inproc_pause_paused"].append(baseline.call(op="pause")["pause"])
            else:
                r = qs.control_cycle(cfg.settle)
                for key, value in r.items():
                    raw[f"qs_{key}"].append(value)
        log(f"control {rep + 1}/{cfg.repeats}")
    return dict(raw)


def bench_points(cfg: Config, ioc: IOC, driver: JsonProc, baseline: Any, qs: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for num in cfg.points:
        raw[str(num)] = collections.defaultdict(list)
    for rep in range(cfg.repeats):
        for num in cfg.points:
            r = raw[str(num)]
            arms = ["ioc", "inproc"]
            if qs is not None and num in cfg.qs_points:
                arms.append("qs")
            for arm in alternate(arms, rep):
                if arm == "ioc":
                    driver.call(op="configure", plan=COUNT, args=count_args(num))
                    before = {p.name for p in ioc.runs()}
                    wall = ioc.caput("Start", 1, "-c", "-w", "600")
                    start, stop, events = run_times(latest_run(ioc.data_dir, before))
                    assert events == num, f"IOC count({num}) saved {events} events"
                    r["ioc_doc"].append(stop - start)
                    r["ioc_caput_wall"].append(wall)
                elif arm == "inproc":
                    b = baseline.call(op="count", num=num)
                    assert b["events"] == num
                    r["inproc_doc"].append(b["doc"])
                    r["inproc_wall"].append(b["wall"])
                else:
                    q = qs.count(num)
                    assert q["events"] == num
                    r["qs_doc"].append(q["doc"])
                    r["qs_wall"].append(q["wall"])
            log(f"points N={num} {rep + 1}/{cfg.repeats}")
    return {k: dict(v) for k, v in raw.items()}


# TODO(softIoc beamline issue): a 1-D scan over a softIoc motor and detector, IOC vs in-process,
# belongs here as bench_scan(), built like bench_points() with the beamline profile.


def _camonitor(
    procs: Processes, ioc: IOC, path: Path, pvs: tuple[str, ...] = STATUS_PVS
) -> tuple[Any, Any]:
    out = open(path, "wb")  # noqa: SIM115 - closed by the caller
    proc = procs.popen(
        # -w 30: no "*** Not connected" line when many clients start at once and the IOC
        # answers a search after camonitor's default 1 s
        [str(EPICS_BIN / "camonitor"), "-w", "30", "-S", "-t", "n"] + [ioc.pv(s) for s in pvs],
        env=ioc.env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return proc, out


def _monitor_lines(path: Path, prefix: str) -> list[tuple[str, str]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].startswith(prefix):
            if parts[1].startswith("*** Not connected"):
                continue  # a search not answered yet, not a value (nor a connection)
            lines.append((parts[0][len(prefix) :], parts[1].strip()))
    return lines


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) so far of the IOC process and of its children (the worker).

    psutil's, not :func:`.procs.cpu_seconds`: the kernel adds an ended thread's time to its
    process's user + system, which the worker needs (it starts a thread per request), while
    schedstat counts only the threads still alive."""
    import psutil

    try:
        proc = psutil.Process(pid)
        own = sum(proc.cpu_times()[:2])
        children = 0.0
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children += sum(child.cpu_times()[:2])
        return own, children
    except psutil.Error:
        return float("nan"), float("nan")


def fanout_arms(cfg: Config) -> list[str]:
    """The fan-out section's arms: N clients on the status PVs, then N on quiet PVs (control)."""
    arms = [str(n) for n in cfg.fanout]
    if cfg.fanout_quiet:
        arms += [f"{n} quiet" for n in cfg.fanout if n]
    return arms


def bench_fanout(
    cfg: Config,
    procs: Processes,
    work: Path,
    ioc: IOC,
    driver: JsonProc,
) -> dict[str, Any]:
    arms = fanout_arms(cfg)
    raw: dict[str, Any] = {arm: collections.defaultdict(list) for arm in arms}
    driver.call(op="configure", plan=COUNT, args=count_args(cfg.fanout_points))
    for rep in range(cfg.repeats):
        for arm in alternate(arms, rep):
            r = raw[arm]
            clients = int(arm.split()[0])
            quiet = arm.endswith("quiet")
            pvs = QUIET_PVS if quiet else STATUS_PVS
            monitors = []
            for i in range(clients):
                path = work / f"camonitor-{rep}-{clients}-{i}.txt"
                proc, out = _camonitor(procs, ioc, path, pvs)
                monitors.append((proc, out, path))
            poll(
                lambda monitors=monitors, clients=clients, pvs=pvs: (
                    sum(  # type: ignore[misc]
                        len({pv for pv, _ in _monitor_lines(p, ioc.prefix)}) == len(pvs)
                        for _, _, p in monitors
                    )
                    == clients
                ),
                timeout=120,
                interval=0.1,
            )
            time.sleep(0.5)
            client_pids = [proc.pid for proc, _, _ in monitors]
            before = {p.name for p in ioc.runs()}
            t_before = time.time()
            cpu0, steal0 = _cpu_seconds(ioc.pid), steal_seconds()
            clients0 = cpu_seconds(client_pids)
            wall = driver.call(op="run")["wall"]
            cpu1, steal1 = _cpu_seconds(ioc.pid), steal_seconds()
            clients1 = cpu_seconds(client_pids)
            r["ioc_cpu"].append(cpu1[0] - cpu0[0])
            r["worker_cpu"].append(cpu1[1] - cpu0[1])
            r["clients_cpu"].append(clients1 - clients0)
            r["steal"].append(steal1 - steal0)
            start, stop, events = run_times(latest_run(ioc.data_dir, before))
            assert events == cfg.fanout_points
            r["doc"].append(stop - start)
            r["wall"].append(wall)
            reference = [s for t, s in driver.call(op="states")["states"] if t >= t_before]
            time.sleep(1.0)  # trailing updates
            updates, complete = [], 0
            mismatches: collections.Counter[str] = collections.Counter()
            for proc, out, path in monitors:
                Processes.end(proc)
                out.close()
                lines = _monitor_lines(path, ioc.prefix)
                updates.append(len(lines) - len(pvs))
                states = [v for pv, v in lines if pv == "State"][1:]
                complete += states == reference
                if states != reference:
                    mismatches["→".join(states) or "(none)"] += 1
                path.unlink()
            if quiet:
                continue  # the control's clients watch nothing that changes
            r["updates_per_client"].append(
                stats.summarize(updates).median if updates else None  # type: ignore[union-attr]
            )
            r["updates_min"].append(min(updates) if updates else None)
            r["state_complete_clients"].append(complete)
            r["state_reference"].append(reference)
            r["state_mismatches"].append(dict(mismatches))  # what the other clients saw
        log(f"fan-out {rep + 1}/{cfg.repeats}")
    return {k: dict(v) for k, v in raw.items()}


def bench_plans(cfg: Config, ioc: IOC, driver: JsonProc) -> dict[str, Any]:
    rss0, threads0 = rss_and_threads([ioc.pid])
    driver.call(op="configure", plan=COUNT, args=count_args(1))
    wall = driver.call(op="run_many", n=cfg.plans, timeout=60)["wall"]
    time.sleep(1.0)
    rss1, threads1 = rss_and_threads([ioc.pid])
    log(f"{cfg.plans} plans in {wall:.1f} s")
    return {
        "plans": cfg.plans,
        "wall": wall,
        "rss_before": rss0,
        "threads_before": threads0,
        "rss_after": rss1,
        "threads_after": threads1,
    }


# --------------------------------------------------------------------- report
def run(cfg: Config) -> dict[str, Any]:
    from .queueserver import QueueServer

    t_start = time.time()
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f} at start",
            "mode": ("quick" if cfg.quick else "full")
            + (
                f", IOC switch interval {cfg.switch_interval} s"
                if cfg.switch_interval is not None
                else ""
            )
            + (
                f", IOC --update-budget {cfg.update_budget}"
                if cfg.update_budget is not None
                else ""
            )
            + (f", only {','.join(cfg.sections)}" if cfg.sections != SECTIONS else ""),
            "repeats": cfg.repeats,
            "versions": versions(),
        },
        "config": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in cfg.__dict__.items()
            if k != "out"
        },
    }
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="runengine-bench-") as tmp:
        work = Path(tmp)
        try:
            repeater = free_port()
            procs.popen(
                [str(EPICS_BIN / "caRepeater")],
                env=dict(os.environ, EPICS_CA_REPEATER_PORT=str(repeater)),
            )
            only = set(cfg.sections)
            if "footprint" in only:
                log("start-up and idle footprint")
                results["startup"] = bench_startup(cfg, procs, work, repeater)
            ioc = IOC(procs, repeater, work, "main")
            ioc.switch_interval = cfg.switch_interval
            if cfg.update_budget is not None:
                ioc.extra_args = ["--update-budget", str(cfg.update_budget)]
            ioc.start()
            qs = None
            if cfg.queueserver and only & {"latency", "points"}:
                qs = QueueServer(procs, work, "main")
                qs.start()
            baseline = None
            if only & {"latency", "points"}:
                baseline = JsonProc(
                    procs, ["benchmarks.inprocess", str(work / "inproc")], work / "inproc.log"
                )
            driver = JsonProc(
                procs, ["benchmarks.client", ioc.prefix], work / "client.log", env=ioc.env
            )
            if "latency" in only:
                log("control latency")
                results["control"] = bench_control(cfg, ioc, driver, baseline, qs)
            if "points" in only:
                log("per-point overhead")
                results["points"] = bench_points(cfg, ioc, driver, baseline, qs)
            if "fanout" in only:
                log("fan-out")
                results["fanout"] = bench_fanout(cfg, procs, work, ioc, driver)
            if "footprint" in only:
                log("footprint after plans")
                results["plans"] = bench_plans(cfg, ioc, driver)
            if qs is not None:
                rss, threads = rss_and_threads(qs.pids())
                results["qs_end"] = {"rss": rss, "threads": threads}
                qs.stop()
            driver.close()
            if baseline is not None:
                baseline.close()
            ioc.stop()
        finally:
            procs.close()
    results["meta"]["duration_s"] = time.time() - t_start
    results["meta"]["load_end"] = os.getloadavg()[0]
    return results


def profile(cfg: Config, num: int = 10000) -> None:
    """py-spy the IOC during count(num): flame graph + hottest frames, into cfg.out."""
    procs = Processes()
    cfg.out.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).parent / "py-spy"
    with tempfile.TemporaryDirectory(prefix="runengine-prof-") as tmp:
        try:
            repeater = free_port()
            procs.popen(
                [str(EPICS_BIN / "caRepeater")],
                env=dict(os.environ, EPICS_CA_REPEATER_PORT=str(repeater)),
            )
            ioc = IOC(procs, repeater, Path(tmp), "prof")
            ioc.start()
            ioc.configure(COUNT, count_args(num))
            for fmt, name in (("raw", "txt"), ("flamegraph", "svg")):
                out = cfg.out / f"profile-ioc-count{num}.{name}"
                spy = procs.popen(
                    [
                        str(py_spy),
                        "record",
                        "--pid",
                        str(ioc.pid),
                        "--threads",
                        "--format",
                        fmt,
                        "--rate",
                        "250",
                        "--nonblocking",
                        "-o",
                        str(out),
                    ],
                    stdout=None,
                    stderr=None,
                )
                time.sleep(1.0)
                wall = ioc.caput("Start", 1, "-c", "-w", "600")
                log(f"count({num}) took {wall:.2f} s under py-spy ({fmt})")
                spy.send_signal(2)
                spy.wait(60)
            summary = summarize_profile(cfg.out / f"profile-ioc-count{num}.txt")
            (cfg.out / f"profile-ioc-count{num}-top.md").write_text(summary)
            print(summary)
        finally:
            procs.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions, smaller sizes")
    parser.add_argument("--repeats", type=int, help="interleaved repetitions (default 7)")
    parser.add_argument("--no-queueserver", action="store_true", help="skip bluesky-queueserver")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    parser.add_argument("--profile", action="store_true", help="py-spy the IOC, nothing else")
    parser.add_argument(
        "--ioc-switch-interval",
        type=float,
        help="experiment: the main IOC runs with this sys.setswitchinterval (seconds)",
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--fanout",
        help="comma-separated monitoring client counts for the fan-out section "
        f"(default: {','.join(map(str, Config.fanout))}; 0 is always included, the baseline)",
    )
    parser.add_argument(
        "--no-fanout-quiet",
        action="store_true",
        help="skip the fan-out control arms (the same clients on PVs that do not change)",
    )
    parser.add_argument(
        "--update-budget",
        type=int,
        help="experiment: the IOC runs with this --update-budget (default: the IOC's)",
    )
    args = parser.parse_args(argv)
    sections: tuple[str, ...] = SECTIONS
    if args.only:
        wanted = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = wanted - set(SECTIONS)
        if unknown or not wanted:
            parser.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
        sections = tuple(x for x in SECTIONS if x in wanted)
    cfg = Config(out=args.out, queueserver=not args.no_queueserver, quick=args.quick)
    cfg.switch_interval = args.ioc_switch_interval
    cfg.fanout_quiet = not args.no_fanout_quiet
    cfg.update_budget = args.update_budget
    cfg.sections = sections
    if args.quick:
        cfg.repeats = cfg.startup_repeats = 3
        cfg.points = (100, 1000)
        cfg.fanout = (0, 10)
        cfg.plans = 100
    if args.repeats:
        cfg.repeats = cfg.startup_repeats = args.repeats
    if args.fanout:
        cfg.fanout = tuple(sorted({0, *(int(x) for x in args.fanout.split(",") if x.strip())}))
    if args.profile:
        profile(cfg)
        return 0
    results = run(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    table = report(results)
    (cfg.out / f"{stamp}.json").write_text(json.dumps(results, indent=1, default=str))
    (cfg.out / f"{stamp}.md").write_text(f"# Benchmark results {stamp}\n\n{table}")
    print(table)
    log(f"wrote {cfg.out / stamp}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
