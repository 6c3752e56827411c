"""Reload soak: many Reloads of a running IOC; its memory, threads, descriptors and processes.

Each Reload starts a new worker process that loads the profile, swaps it in and retires the old
one. The IOC process itself must not grow: this drives ``--reloads`` Reloads (``caput -c``
Reload, one after the other) on the simulated profile and samples the IOC every ``--every``
Reloads: resident memory, threads, open file descriptors, child processes, and that a short
plan still runs. The growth reported is from the first sample (after a warm-up of ``--every``
Reloads, which lets allocators and thread pools reach their size) to the last.

    python -m benchmarks.reload_soak --reloads 500 --every 50

Everything is loopback, on free ports, in a temp dir; every process is ended by its PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import EPICS_BIN, loopback_env
from tests.polling import wait_until
from tests.ports import free_port

HERE = Path(__file__).resolve().parent


@dataclass
class Sample:
    reloads: int
    seconds: float
    rss_mb: float
    threads: int
    fds: int
    children: int
    plan_ok: bool


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(p) for p in file.read().split()]


class Tools:
    def __init__(self, env: dict[str, str], prefix: str) -> None:
        self.env, self.prefix = env, prefix

    def run(self, tool: str, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(EPICS_BIN / tool), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def get(self, suffix: str) -> str | None:
        result = self.run("caget", "-t", "-w", "2", self.prefix + suffix, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else None

    def put(self, suffix: str, value: str, *flags: str) -> bool:
        args = ["-c", "-w", "60", *flags, self.prefix + suffix, value]
        return self.run("caput", *args).returncode == 0


def sample(pid: int, tools: Tools, reloads: int, started: float) -> Sample:
    ok = tools.put("Start", "1") and tools.get("ExitStatus") == "success"
    return Sample(
        reloads,
        time.monotonic() - started,
        rss_mb(pid),
        len(os.listdir(f"/proc/{pid}/task")),
        len(os.listdir(f"/proc/{pid}/fd")),
        len(children(pid)),
        ok,
    )


def table(samples: list[Sample]) -> str:
    lines = [
        "| Reloads | s | IOC RSS (MB) | threads | fds | worker processes | a plan runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(
            f"| {s.reloads} | {s.seconds:.0f} | {s.rss_mb:.1f} | {s.threads} | {s.fds} | "
            f"{s.children} | {'yes' if s.plan_ok else 'NO'} |"
        )
    first, last = samples[0], samples[-1]
    lines.append("")
    lines.append(
        f"From {first.reloads} to {last.reloads} Reloads: "
        f"RSS {last.rss_mb - first.rss_mb:+.2f} MB, "
        f"threads {last.threads - first.threads:+d}, fds {last.fds - first.fds:+d}; "
        f"{(last.seconds - first.seconds) / max(1, last.reloads - first.reloads):.2f} s per Reload."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=500)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    repeater_port, port = free_port(), free_port()
    env = loopback_env(port, repeater_port)
    prefix = f"SOAK{uuid.uuid4().hex[:6]}:"
    started: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as work:
        try:
            started.append(
                subprocess.Popen(
                    [str(EPICS_BIN / "caRepeater")],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            log = open(Path(work) / "ioc.log", "wb")  # noqa: SIM115 - closed below
            ioc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runengine_ioc.cli",
                    "--prefix",
                    prefix,
                    "-q",
                    "--data-dir",
                    str(Path(work) / "data"),
                    "--no-autosave",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            started.append(ioc)
            tools = Tools(env, prefix)
            wait_until(lambda: tools.get("State") == "idle", 60, what="the IOC")
            assert tools.put("PlanName", "count")
            assert tools.put("PlanArgs", '{"detectors": ["det"], "num": 2}', "-S")
            begin = time.monotonic()
            samples: list[Sample] = []
            for done in range(1, args.reloads + 1):
                if not tools.put("Reload", "1"):
                    raise SystemExit(f"Reload {done} failed:\n{tools.get('Status')}")
                if done % args.every == 0:
                    samples.append(sample(ioc.pid, tools, done, begin))
                    print(table(samples[-1:]).splitlines()[2], flush=True)
            report = table(samples)
            print(report)
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / time.strftime("reload-soak-%Y%m%d-%H%M%S.md")
            path.write_text(f"# Reload soak ({args.reloads} Reloads)\n\n{report}\n")
            print(path)
        finally:
            for proc in reversed(started):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
