"""The benchmark report: the results of ``benchmarks.run`` as a Markdown page."""

from __future__ import annotations

import collections
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from . import stats
from .procs import STATUS_PVS

MIB = 1024 * 1024
#: Fan-out goals: plan duration with N monitoring clients / with none (median ratio).
FANOUT_GOALS = {"10": 1.03, "50": 1.10, "100": 1.10}


def report(results: dict[str, Any]) -> str:
    S, R = stats.summarize, stats.ratio_summary
    fs, fr, ok = stats.fmt_summary, stats.fmt_ratio, stats.verdict
    meta = results["meta"]
    parts = [
        f"Run {meta['started']} on {meta['machine']}; {meta['mode']} mode, "
        f"{meta['repeats']} interleaved repetitions; took {meta['duration_s'] / 60:.1f} min. "
        "Cells: median (min-max); ratios are taken within each repetition, then summarised.",
    ]

    points = results.get("points", {})
    rows = []
    for num, r in points.items():
        n = int(num)
        overhead = [(a - b) / n * 1e6 for a, b in zip(r["ioc_doc"], r["inproc_doc"], strict=True)]
        ratio = R(r["ioc_doc"], r["inproc_doc"])
        goal = 1.05 if n >= 1000 else None
        qs = r.get("qs_doc")
        rows.append(
            [
                f"{n}",
                fs(S(r["inproc_doc"]), "s"),
                fs(S(r["ioc_doc"]), "s"),
                fr(ratio) + (f" {ok(ratio, goal)}" if goal else ""),
                fs(S(overhead), "µs"),
                fs(S(r["ioc_caput_wall"]), "s"),
                fs(S(qs), "s") if qs else "—",
                fr(R(qs, r["inproc_doc"])) if qs else "—",
                fr(R(r["ioc_doc"], qs)) if qs else "—",
            ]
        )
    if rows:
        parts.append(
            "### 1. Per-point overhead: count(det, num=N), start→stop document times\n\n"
            + stats.markdown_table(
                [
                    "N",
                    "in-process",
                    "IOC",
                    "IOC / in-process (goal ≤ 1.05 for N ≥ 1000)",
                    "IOC extra per point",
                    "IOC `caput -c` wall",
                    "queueserver",
                    "queueserver / in-process",
                    "IOC / queueserver",
                ],
                rows,
            )
        )

    c = results.get("control", {})
    if c:
        ms = 1e3

        def row(name: str, ours: str, theirs: str | None, goal: float | None) -> list[str]:
            o = S(c.get(ours, []))
            t = S(c.get(theirs, [])) if theirs else None
            ratio = R(c.get(ours, []), c[theirs]) if theirs and c.get(theirs) else None
            return [
                name,
                fs(o, "ms", ms),
                fs(t, "ms", ms) if theirs else "—",
                fr(ratio) if ratio else "—",
                f"≤ {goal:g} ms {ok(o, goal / ms)}" if goal else "",
            ]

        rows = [
            row("Start → State running", "start_running", "qs_start_running", 10),
            row("Start → start document on disk", "start_document", None, None),
            row("Pause → State paused", "pause_paused", "qs_pause_paused", 20),
            row("Resume → State running", "resume_running", "qs_resume_running", None),
            row("Abort (running) → State idle", "abort_idle", "qs_abort_idle", 50),
            row("Abort (running) → stop document on disk", "abort_stop_document", None, None),
            [
                "in-process: request_pause → paused",
                fs(S(c.get("inproc_pause_paused", [])), "ms", ms),
                "",
                "",
                "",
            ],
        ]
        parts.append(
            "### 2. Control latency, seen by a monitoring client in its own process\n\n"
            + stats.markdown_table(
                ["transition", "IOC (pyepics)", "queueserver (API)", "ours / theirs", "goal"],
                rows,
            )
            + "\n\nqueueserver: submit = `item_add` + `queue_start`; it aborts only a paused plan,"
            " so its abort is timed from a paused plan; `status()` polled every 5 ms."
        )

    f = results.get("fanout", {})
    if f:
        parts.append(fanout_table(f, results["config"]["fanout_points"]))
        missed = []
        for clients, r in f.items():
            seen: collections.Counter[str] = collections.Counter()
            for m in r.get("state_mismatches", []):
                seen.update(m)
            if seen:
                missed.append(
                    f"{clients} clients: "
                    + ", ".join(f"{n} x {seq}" for seq, n in seen.most_common())
                )
        if missed:
            parts[-1] += (
                "\n\nState after the initial value, at the clients that did not see every"
                " transition: " + "; ".join(missed) + "."
            )

    s = results.get("startup", {})
    p = results.get("plans", {})
    if s:
        mib = 1 / MIB
        rows = [
            [
                "start-up → first PV answers / manager answers",
                fs(S(s["ioc_startup"]), "s"),
                fs(S(s.get("qs_startup_manager", [])), "s"),
                fr(R(s["ioc_startup"], s["qs_startup_manager"]))
                if s.get("qs_startup_manager")
                else "—",
                "",
            ],
            [
                "start-up → ready to run a plan (queueserver: environment open)",
                fs(S(s["ioc_startup"]), "s"),
                fs(S(s.get("qs_startup_environment", [])), "s"),
                fr(R(s["ioc_startup"], s["qs_startup_environment"]))
                if s.get("qs_startup_environment")
                else "—",
                "",
            ],
            [
                "RSS idle (queueserver: its manager's processes; redis apart)",
                fs(S(s["ioc_idle_rss"]), "MiB", mib),
                fs(S(s.get("qs_idle_rss", [])), "MiB", mib),
                fr(R(s["ioc_idle_rss"], s["qs_idle_rss"])) if s.get("qs_idle_rss") else "—",
                f"< 120 MiB {ok(S(s['ioc_idle_rss']), 120 * MIB)}",
            ],
            [
                "threads idle",
                fs(S(s["ioc_idle_threads"])),
                fs(S(s.get("qs_idle_threads", []))),
                "",
                "",
            ],
        ]
        if s.get("redis_idle_rss"):
            rows.append(["redis-server RSS", "—", fs(S(s["redis_idle_rss"]), "MiB", mib), "", ""])
        if p:
            rows += [
                [
                    f"RSS after {p['plans']} plans (count num=1)",
                    f"{p['rss_after'] * mib:.1f} MiB (before: {p['rss_before'] * mib:.1f})",
                    (
                        f"{results['qs_end']['rss'] * mib:.1f} MiB at the end of the run"
                        if results.get("qs_end")
                        else "—"
                    ),
                    "",
                    f"< 120 MiB {'yes' if p['rss_after'] < 120 * MIB else '**no**'}",
                ],
                [
                    f"threads after {p['plans']} plans",
                    f"{p['threads_after']} (before: {p['threads_before']})",
                    "",
                    "",
                    "",
                ],
                [
                    f"{p['plans']} plans back to back, `Start` put with completion",
                    f"{p['wall']:.1f} s ({p['wall'] / p['plans'] * 1e3:.1f} ms a plan)",
                    "",
                    "",
                    "",
                ],
            ]
        parts.append(
            "### 4. Footprint\n\n"
            + stats.markdown_table(["", "IOC", "queueserver", "ours / theirs", "goal"], rows)
        )
    parts.append(
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["meta"]["versions"].items())
    )
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------- main


def fanout_table(f: dict[str, Any], points: int) -> str:
    """Section 3: one row per arm; a quiet arm's clients watch IOC PVs that do not change."""
    S, R = stats.summarize, stats.ratio_summary
    fs, fr, ok = stats.fmt_summary, stats.fmt_ratio, stats.verdict
    base = f.get("0", {}).get("doc")
    rows = []
    for arm, r in f.items():
        ratio = R(r["doc"], base) if base else None
        quiet = f.get(f"{arm} quiet")
        on_ioc = arm != "0" and "quiet" not in arm
        refs = {tuple(x) for x in r.get("state_reference", [])}
        rows.append(
            [
                arm,
                fs(S(r["doc"]), "s"),
                fr(ratio) if ratio is not None else "—",
                fr(R(r["doc"], quiet["doc"])) if on_ioc and quiet else "—",
                fs(S(r["updates_per_client"])) if on_ioc else "—",
                (
                    f"{sum(r['state_complete_clients'])}/{int(arm) * len(r['doc'])}"
                    if on_ioc
                    else "—"
                ),
                " / ".join("→".join(x) for x in sorted(refs)) or "—",
                " / ".join(
                    fs(S(r[key]), "s") if r.get(key) else "—"
                    for key in ("ioc_cpu", "worker_cpu", "clients_cpu", "steal")
                ),
                (
                    f"≤ {FANOUT_GOALS[arm]:.2f} {ok(ratio, FANOUT_GOALS[arm])}"
                    if arm in FANOUT_GOALS and ratio is not None
                    else ""
                ),
            ]
        )
    return (
        f"### 3. Fan-out: camonitor clients on all {len(STATUS_PVS)} status PVs during "
        f"count(N={points})\n\n"
        + stats.markdown_table(
            [
                "clients",
                "plan duration",
                "ratio to 0 clients",
                "ratio to the same clients on quiet PVs",
                "updates per client (median)",
                "clients that saw every State transition",
                "State sequence (driver)",
                "CPU during the plan: IOC / worker / clients / stolen by the host",
                "goal (ratio to 0)",
            ],
            rows,
        )
        + "\n\n`N quiet`: the same N camonitor processes on 12 of the IOC's PVs that do not"
        " change during the plan (PlanName, PlanArgs, ..., Profile): what the clients and their"
        " connections cost by merely running. The ratio to them is what the status updates add."
    )


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "runengine-ioc",
        "bluesky",
        "ophyd",
        "caproto",
        "pyepics",
        "bluesky-queueserver",
        "bluesky-queueserver-api",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def summarize_profile(path: Path, top: int = 25) -> str:
    """Inclusive and self sample shares per function from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"py-spy samples: {total}", "", "threads:"]
    lines += [f"- {c / total:6.1%} {t}" for t, c in threads.most_common()]
    lines += ["", "inclusive (function, file:line):"]
    lines += [f"- {c / total:6.1%} {f}" for f, c in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"- {c / total:6.1%} {f}" for f, c in own.most_common(top)]
    return "\n".join(lines) + "\n"
