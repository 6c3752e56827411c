"""``runengine-ioc``: parse flags, load the profile, build everything, serve."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from pathlib import Path
from typing import Any

from caproto import _constants as caproto_constants
from caproto.server import template_arg_parser

from .ca.access_options import add_access_arguments, gate_settings
from .ca.autosave import AUTOSAVE_FILE, Autosave
from .ca.fanout import DEFAULT_SEND_TIMEOUT
from .ca.refusal_log import install_refusal_log
from .ca.server import RunEngineIOC, serve
from .data import guarded_sinks as doc_sinks
from .data.disk import DEFAULT_MIN_FREE_MB
from .data.files import (
    LocalFilesSink,
    PersistentScanId,
    describe_interrupted,
    find_interrupted_runs,
)
from .data.guarded_sinks import GuardedSink, SinkMonitor
from .data.live_data import DEFAULT_CAPACITY, LiveData
from .engine.bluesky_adapter import install_lazy_plan_stacks
from .engine.bridge import Bridge
from .engine.profile import DEFAULT_PROFILE, ProfileError, Setup, build_setup
from .engine.registry import DEFAULT_MAX_POINTS
from .engine.worker import DEFAULT_HALT_TIMEOUT, RunEngineWorker
from .panels.generate import write_all
from .panels.service import ControlRoom
from .queue.plan_queue import open_queue

log = logging.getLogger("runengine_ioc")

#: Re-read on Reload, so that edits to the plan library reach a running IOC.
PLAN_LIBRARY = "runengine_ioc.plans"

DEFAULT_DATA_DIR = "~/runengine-data"
#: caproto batches monitor updates for up to this long; its 10 ms default is most of the
#: latency a client sees for a State change (benchmarks/README.md).
DEFAULT_MONITOR_BATCH_TIME = 0.002


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a limit of 0 would refuse every plan)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, Any]:
    parser, split_args = template_arg_parser(
        desc="An EPICS IOC that owns a bluesky RunEngine: choose, start and watch plans "
        "from any Channel Access client.",
        default_prefix="RE:",
        argv=argv,
        supported_async_libs=["asyncio"],
    )
    for action in parser._actions:  # caproto's --prefix has no help text: say its default
        if "--prefix" in action.option_strings:
            action.help = "prefix of every PV this IOC serves (default: %(default)s)"
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="beamline profile: a module name or a .py file defining build_profile() "
        f"(default: {DEFAULT_PROFILE}, simulated devices)",
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="directory for the runs' document files, one .jsonl per run "
        f"(default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--min-free-mb",
        type=float,
        default=DEFAULT_MIN_FREE_MB,
        help="refuse to start a plan while the data directory has less free space than this "
        f"(MB), or cannot be written; Disk:Status says so (default: {DEFAULT_MIN_FREE_MB:g})",
    )
    parser.add_argument(
        "--happi-db",
        default=None,
        help="a happi JSON database whose active items are added to the profile's devices",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=10.0,
        help="upper bound (Hz) on per-point PV updates such as Progress (default: 10)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a plan to end cleanly on SIGINT/SIGTERM (default: 10)",
    )
    parser.add_argument(
        "--halt-timeout",
        type=float,
        default=DEFAULT_HALT_TIMEOUT,
        help="seconds a Halt (or a shutdown) waits for the RunEngine to end the plan; past "
        "that the IOC gives that RunEngine up, closes the run (exit status abort) and goes on "
        f"with a fresh one (default: {DEFAULT_HALT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--monitor-batch-time",
        type=float,
        default=DEFAULT_MONITOR_BATCH_TIME,
        help="under a fast stream of monitors, send to each client at most once per this many "
        "seconds (one write for all); a first update after a quiet spell and put completions "
        f"go at once (default: {DEFAULT_MONITOR_BATCH_TIME})",
    )
    parser.add_argument(
        "--client-timeout",
        type=float,
        default=DEFAULT_SEND_TIMEOUT,
        help="disconnect a client that has read nothing for this many seconds (it stalls "
        "only itself meanwhile; its monitors wait, newest value kept) "
        f"(default: {DEFAULT_SEND_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-points",
        type=_positive_int,
        default=DEFAULT_MAX_POINTS,
        help="refuse a plan of more points than this (num, the length of a list of positions, "
        "the product over a grid's axes), at put and at Start, before anything runs; a "
        f"profile's max_points may lower it (default: {DEFAULT_MAX_POINTS})",
    )
    parser.add_argument(
        "--data-capacity",
        type=int,
        default=DEFAULT_CAPACITY,
        help="points kept in the Data:X/Y arrays; a longer run keeps the most recent "
        f"(default: {DEFAULT_CAPACITY})",
    )
    parser.add_argument(
        "--panels-dir",
        default=None,
        help="write the PyDM and Phoebus screens, the alarm and archiver files here at "
        "start-up and after each Reload (see also: runengine-ioc panels --help)",
    )
    parser.add_argument(
        "--no-autosave",
        action="store_true",
        help=f"do not save PlanName, PlanArgs, Metadata and the forms' fields to "
        f"<data dir>/{AUTOSAVE_FILE}, nor restore them at start-up",
    )
    parser.add_argument(
        "--queue-autostart",
        action="store_true",
        help="start the plan queue at start-up if it holds items, and whenever items are "
        "added while it is stopped (Queue:Autostart); without it a restarted IOC waits for "
        "Queue:Start",
    )
    add_access_arguments(parser)
    sinks = parser.add_argument_group(
        "document sinks",
        "besides the local files; each runs behind its own queue and thread, so it never "
        "slows or stops a plan (Sinks:Status, Sinks:Dropped say how it goes)",
    )
    sinks.add_argument(
        "--zmq-publish",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="publish every document to a bluesky 0MQ proxy (bluesky-0MQ-proxy's in-address)",
    )
    sinks.add_argument(
        "--zmq-serve",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="serve every document on HOST:PORT for bluesky RemoteDispatchers to connect to "
        "directly (bluesky's 0MQ proxy, run inside the IOC)",
    )
    sinks.add_argument(
        "--tiled-uri",
        help="write every run to this Tiled server with bluesky's TiledWriter (API key from "
        "the TILED_API_KEY environment variable; needs the 'tiled' extra)",
    )
    sinks.add_argument(
        "--tiled-batch-size",
        type=int,
        default=100,
        help="events gathered before each write to Tiled (default: 100; 1 for live)",
    )
    sinks.add_argument(
        "--kafka-topic", help="publish every document to this Kafka topic (the 'kafka' extra)"
    )
    sinks.add_argument(
        "--kafka-bootstrap",
        default="127.0.0.1:9092",
        metavar="SERVERS",
        help="Kafka bootstrap servers, comma-separated (default: 127.0.0.1:9092)",
    )
    sinks.add_argument(
        "--sink-queue-size",
        type=int,
        default=doc_sinks.DEFAULT_QUEUE_SIZE,
        help="documents held for a slow sink before further ones are dropped "
        f"(default: {doc_sinks.DEFAULT_QUEUE_SIZE})",
    )
    return parser, split_args


def _same(callback: Any) -> Any:
    return callback


def build_sinks(args: argparse.Namespace, monitor: SinkMonitor) -> list[GuardedSink]:
    """The sinks asked for on the command line, each guarded.

    Raises ImportError (a missing extra) or ValueError (bad options) before anything runs.
    """
    named: list[tuple[str, doc_sinks.Factory]] = []
    for address in args.zmq_publish:
        named.append((f"zmq-publish {address}", doc_sinks.zmq_publisher(address)))
    for address in args.zmq_serve:
        named.append((f"zmq-serve {address}", doc_sinks.ZmqServer(address).factory()))
    if args.tiled_uri:
        factory = doc_sinks.tiled_writer(args.tiled_uri, batch_size=args.tiled_batch_size)
        named.append((f"tiled {args.tiled_uri}", factory))
    if args.kafka_topic:
        factory = doc_sinks.kafka_publisher(args.kafka_topic, args.kafka_bootstrap)
        named.append((f"kafka {args.kafka_topic}@{args.kafka_bootstrap}", factory))
    return [
        GuardedSink(name, factory, monitor, queue_size=args.sink_queue_size)
        for name, factory in named
    ]


def guard_profile_callbacks(
    setup: Setup, monitor: SinkMonitor, queue_size: int
) -> list[GuardedSink]:
    """The profile's callbacks, each behind its own guard like the command-line sinks."""
    guarded = []
    for callback in setup.callbacks:
        label = getattr(callback, "__name__", type(callback).__name__)
        factory = functools.partial(_same, callback)
        guarded.append(GuardedSink(f"profile {label}", factory, monitor, queue_size=queue_size))
    return guarded


async def _main(
    args: argparse.Namespace, ioc_options: dict[str, Any], run_options: dict[str, Any]
) -> int:
    try:
        setup = build_setup(args.profile, args.happi_db, max_points=args.max_points)
    except ProfileError as exc:
        log.error("cannot start: %s", exc)
        return 2
    registry = setup.registry
    data_dir = Path(args.data_dir).expanduser()
    files = LocalFilesSink(data_dir, min_free_mb=args.min_free_mb)
    interrupted = describe_interrupted(find_interrupted_runs(data_dir))
    if interrupted:
        log.warning("%s", interrupted)
    try:  # the plan queue and its history (<data dir>/queue.sqlite)
        queue, queue_note = open_queue(data_dir)
    except Exception as exc:  # sqlite3.Error, OSError: an unreadable database
        log.error("cannot start: the queue database: %s", exc)
        return 2
    # no plan is accepted (Start, forms, Submit, the queue) while the data directory is full
    bridge = Bridge(
        asyncio.get_running_loop(), max_rate_hz=args.max_rate, preflight=[files.preflight]
    )
    monitor = SinkMonitor(bridge.listener)
    try:
        live_data = LiveData(bridge.listener, capacity=args.data_capacity)
        sinks = build_sinks(args, monitor)
    except (ImportError, ValueError, OSError) as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 2
    profile_sinks = guard_profile_callbacks(setup, monitor, args.sink_queue_size)
    monitor.report()
    try:
        gate = gate_settings(args, data_dir, setup)
    except (ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2

    def reloader() -> Setup:
        reloaded = build_setup(
            args.profile, args.happi_db, reload_modules=[PLAN_LIBRARY], max_points=args.max_points
        )
        guarded = guard_profile_callbacks(reloaded, monitor, args.sink_queue_size)
        retiring = list(profile_sinks)

        def applied() -> None:
            profile_sinks[:] = guarded
            doc_sinks.close_all(retiring, 1.0)

        reloaded.callbacks = list(guarded)
        reloaded.on_applied = applied
        return reloaded

    # bluesky formats a stack per plan stub (most of a point's time): only when it warns
    install_lazy_plan_stacks()
    worker = RunEngineWorker(
        registry,
        bridge.listener,
        # the files first and unbuffered (lossless); the others never hold up the plan
        callbacks=[files, live_data, *sinks],
        profile_callbacks=profile_sinks,
        suspenders=setup.suspenders,
        metadata=setup.metadata,
        scan_id_source=PersistentScanId(data_dir),
        halt_timeout=args.halt_timeout,
    )
    bridge.attach(worker)
    ioc_class = RunEngineIOC.with_data_capacity(args.data_capacity)
    ioc = ioc_class(
        registry=registry,
        bridge=bridge,
        reloader=reloader,
        description=setup.description,
        gate=gate,
        queue=queue,
        **ioc_options,
    )
    log.info(
        "profile %s: plans %s; devices %s; data in %s",
        args.profile,
        ", ".join(registry.plan_names),
        ", ".join(registry.device_names),
        data_dir,
    )
    if sinks:
        log.info("document sinks: %s", ", ".join(sink.name for sink in sinks))
    ioc.disk.source = files.disk_state
    ioc.queue_pvs.autostart_at_start = args.queue_autostart
    room = ControlRoom(
        ioc,
        None if args.no_autosave else Autosave(data_dir / AUTOSAVE_FILE),
        Path(args.panels_dir).expanduser() if args.panels_dir else None,
    )
    restored = await room.start()
    code = await serve(
        ioc,
        interfaces=run_options["interfaces"],
        log_pv_names=run_options["log_pv_names"],
        shutdown_timeout=args.shutdown_timeout,
        client_timeout=args.client_timeout,
        monitor_batch_time=args.monitor_batch_time,
        startup_note="; ".join(note for note in (interrupted, restored, queue_note) if note),
    )
    queue.close()
    # the last documents go out before the process ends
    all_sinks = [*sinks, *profile_sinks]
    if not await asyncio.to_thread(doc_sinks.close_all, all_sinks, args.shutdown_timeout):
        log.error("some document sinks did not finish within %.1f s", args.shutdown_timeout)
    files.close()  # a run left without its stop document keeps what it has
    return code


def panels_main(argv: list[str]) -> int:
    """``runengine-ioc panels``: write the control room's files without serving."""
    parser = argparse.ArgumentParser(
        prog="runengine-ioc panels",
        description="Write the PyDM (.ui) and Phoebus (.bob) screens, the Phoebus alarm "
        "configuration and the Archiver Appliance PV list for an IOC and its profile's plans.",
    )
    parser.add_argument("--prefix", default="RE:", help="the IOC's PV prefix (default: RE:)")
    parser.add_argument("--out", required=True, help="directory to write the files into")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="the beamline profile")
    parser.add_argument("--happi-db", default=None, help="a happi JSON database")
    parser.add_argument("--data-capacity", type=int, default=DEFAULT_CAPACITY)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        setup = build_setup(args.profile, args.happi_db)
    except ProfileError as exc:
        log.error("cannot write the screens: %s", exc)
        return 2
    ioc_class = RunEngineIOC.with_data_capacity(args.data_capacity)
    for path in write_all(Path(args.out).expanduser(), args.prefix, setup.registry, ioc_class):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["panels"]:
        return panels_main(given[1:])
    parser, split_args = build_parser(argv)
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("caproto").propagate = False  # caproto has its own handler
    # each subscription's backlog is bounded by our fan-out (ca/fanout.py), not caproto's
    # max_subscription_backlog: its warning for every long array PV would be noise
    caproto_constants.SUBSCRIPTION_BACKLOG_WARN_THRESHOLD_ELEMENTS = 0
    # a refused put: one line (rate-limited per client), not caproto's traceback (-v: both)
    remove_refusal_log = install_refusal_log()
    if args.verbose:
        logging.getLogger("runengine_ioc.ca.refusal_log").setLevel(logging.DEBUG)
    try:
        return asyncio.run(_main(args, ioc_options, run_options))
    finally:
        remove_refusal_log()


if __name__ == "__main__":
    sys.exit(main())
